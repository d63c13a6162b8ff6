"""DPM-Solver (Lu et al. 2022) and DPM-Solver++ (Lu et al. 2022b): exponential integrators of the
probability-flow ODE in the half log-SNR λ = -log σ.

In VE form (α = 1) the linear part of the ODE integrates exactly. One step from σ to σ' has
h = λ' - λ = log(σ / σ') > 0 and, with the model output m Taylor-expanded in λ,

    noise prediction (DPM-Solver,   m = ε = (x - D) / σ):  x' = x       - σ' Σ_k h φ_{k+1}(h)  Δ_k
    data prediction  (DPM-Solver++, m = D):                 x' = σ'/σ x  +    Σ_k h φ_{k+1}(-h) Δ_k

where Δ_0 = m, Δ_k ≈ h^k d^k m / dλ^k and φ_k are the exponential-integrator functions
(φ_1(z) = (e^z - 1)/z, φ_{k+1}(z) = (φ_k(z) - 1/k!)/z). A solver only chooses how to estimate
Δ_1, Δ_2: from intermediate points (singlestep, Runge-Kutta like) or from earlier steps
(multistep, Adams-Bashforth like). ``exp_step`` is that formula, written once.

Registered names (``order`` 1-3, ``method`` "singlestep" | "multistep", ``prediction``
"noise" | "data" are options of every one of them):

    dpm-solver        noise prediction, default order 3 singlestep (DPM-Solver-3)
    dpm-solver-1      = DDIM (Lu et al. 2022, DPM-Solver-1)
    dpm-solver-2      singlestep, r1 = 1/2 (Lu et al. 2022, Alg. 1)
    dpm-solver-3      singlestep, r1, r2 = 1/3, 2/3 (Lu et al. 2022, Alg. 2)
    dpm-solver-2m/-3m multistep noise prediction (Lu et al. 2022b's multistep in ε form)
    dpmpp             data prediction, default order 2 multistep
    dpmpp-2s          DPM-Solver++(2S) (Lu et al. 2022b, Alg. 1, r = 1/2; k-diffusion's
                      dpmpp_2s_ancestral with eta=0)
    dpmpp-3s          DPM-Solver++(3S), singlestep 3rd order in data prediction
    dpmpp-2m          DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2), = ``dpmpp``
    dpmpp-3m          DPM-Solver++(3M), multistep 3rd order

Rules: singlestep order k costs k evaluations per step; every solver's final step to σ=0
returns the data prediction (1 evaluation), so singlestep NFE = k (n - 1) + 1. Multistep
solvers cost 1 evaluation per step, warm up with lower orders on the first steps and, with
``lower_order_final=True`` (default) and fewer than 15 steps, cap the order of step i at n - i
(diffusers' DPMSolverMultistepScheduler rule; the DPM-Solver reference code uses fewer than
10 steps). The lower-order warm-up makes 3rd-order multistep globally 2nd order as h -> 0; it is
cheap in practice because the ODE is nearly linear at high σ (see the tests).

Deviation from the reference code: third-order multistep uses
Δ_2 = 2 (D1_0 - D1_1) / (r0 + r1) ≈ h² m''. The dpm-solver, diffusers and k-diffusion codes
put (D1_0 - D1_1) / (r0 + r1) ≈ h² m'' / 2 against the h φ_3 coefficient of h² m'', half the
Taylor term: not exact on quadratic m, and second order even from exact starting values
(measured 2.05 on a Gaussian mixture; tests/test_solvers_dpm.py pins the full term).
"""
from __future__ import annotations

import math
from functools import partial

import torch

from . import register

PREDICTIONS = ("noise", "data")
METHODS = ("singlestep", "multistep")


def phi(k: int, z: float) -> float:
    """φ_k(z) = Σ_j z^j / (j + k)!, the exponential-integrator function (Hochbruck & Ostermann
    2010); a series for small |z| where the recursion cancels."""
    if abs(z) < 0.5:
        return sum(z ** j / math.factorial(j + k) for j in range(25))
    out = math.expm1(z) / z
    for j in range(1, k):
        out = (out - 1.0 / math.factorial(j)) / z
    return out


def exp_step(x, sigma: float, sigma_next: float, derivs, prediction: str = "data"):
    """One exponential-integrator step σ -> σ' > 0 from Δ_0 = m and Δ_k ≈ h^k m^(k): the exact
    solution (Lu et al. 2022, Prop. 3.1; Lu et al. 2022b, Sec. 3) of the Taylor-expanded m."""
    h = math.log(sigma) - math.log(sigma_next)
    if prediction == "data":
        a, z, scale = sigma_next / sigma, -h, 1.0
    else:
        a, z, scale = 1.0, h, -sigma_next
    # the first term in closed form, h φ_1(z) = ±expm1(z) (no series, no cancellation)
    out = torch.add(x * a if a != 1.0 else x, derivs[0], alpha=scale * math.expm1(z) * (h / z))
    for k, d in enumerate(derivs[1:], start=1):
        out = out + d * (scale * h * phi(k + 1, z))
    return out


def model_output(x, denoised, sigma: float, prediction: str):
    """The quantity the solver extrapolates: D (data prediction) or ε = (x - D) / σ (noise)."""
    return denoised if prediction == "data" else (x - denoised) / sigma


def sub_sigma(sigma: float, sigma_next: float, r: float) -> float:
    """σ at λ + r h, the intermediate point of a singlestep solver."""
    return math.exp((1 - r) * math.log(sigma) + r * math.log(sigma_next))


def singlestep_update(denoiser, x, sigma: float, sigma_next: float, m0, order: int, prediction: str):
    """Singlestep DPM-Solver-k / DPM-Solver++(kS) (Lu et al. 2022, Alg. 1 with r1 = 1/2 and
    Alg. 2 with r1, r2 = 1/3, 2/3); ``order - 1`` extra evaluations."""
    if order == 1:
        return exp_step(x, sigma, sigma_next, [m0], prediction)
    if order == 2:
        r1 = 0.5
        s1 = sub_sigma(sigma, sigma_next, r1)
        u1 = exp_step(x, sigma, s1, [m0], prediction)
        m1 = model_output(u1, denoiser(u1, s1), s1, prediction)
        return exp_step(x, sigma, sigma_next, [m0 + (m1 - m0) / (2 * r1)], prediction)
    r1, r2 = 1 / 3, 2 / 3
    s1, s2 = sub_sigma(sigma, sigma_next, r1), sub_sigma(sigma, sigma_next, r2)
    u1 = exp_step(x, sigma, s1, [m0], prediction)
    d1 = model_output(u1, denoiser(u1, s1), s1, prediction) - m0
    u2 = exp_step(x, sigma, s2, [m0, d1 * (r2 / r1)], prediction)
    d2 = model_output(u2, denoiser(u2, s2), s2, prediction) - m0
    return exp_step(x, sigma, sigma_next, [m0, d2 / r2], prediction)


def multistep_update(x, ms, sigmas_hist, sigma_next: float, order: int, prediction: str = "data"):
    """Multistep DPM-Solver / DPM-Solver++(kM) (Lu et al. 2022b, Alg. 2 and its order 3) from the
    last ``order`` model outputs ``ms`` at ``sigmas_hist`` (last entry = current σ)."""
    sigma, m0 = sigmas_hist[-1], ms[-1]
    h = math.log(sigma) - math.log(sigma_next)
    if order == 1:
        return exp_step(x, sigma, sigma_next, [m0], prediction)
    r0 = (math.log(sigmas_hist[-2]) - math.log(sigma)) / h
    if order == 2:  # the "midpoint" form m0 + (m0 - m_-1) / (2 r0) of the papers
        return exp_step(x, sigma, sigma_next, [torch.add(m0 * (1 + 1 / (2 * r0)), ms[-2], alpha=-1 / (2 * r0))],
                        prediction)
    d1_0 = (m0 - ms[-2]) / r0
    r1 = (math.log(sigmas_hist[-3]) - math.log(sigmas_hist[-2])) / h
    d1_1 = (ms[-2] - ms[-3]) / r1
    d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))
    d2 = (d1_0 - d1_1) * (2 / (r0 + r1))  # ≈ h² m'' (see the module docstring)
    return exp_step(x, sigma, sigma_next, [m0, d1, d2], prediction)


def step_order(order: int, i: int, n: int, history: int, lower_order_final: bool, below: float = 15) -> int:
    """Order of multistep step i of n: warm-up limited by the ``history`` available and, with
    lower_order_final and n < ``below``, capped at n - i (the reference codes' lower_order_final)."""
    p = min(order, history)
    if lower_order_final and n < below:
        p = min(p, n - i)
    return p


def multistep(denoiser, x, step, state, update, *, order: int, prediction: str = "data",
              lower_order_final: bool = True, lower_order_below: float = 15, correct=None):
    """One step of the multistep method shared by DPM-Solver(++) and UniPC: one evaluation,
    ``update(x, ms, sigmas_hist, sigma_next, p)`` predicts, the optional
    ``correct(x_prev, ms, sigmas_hist, m_t, sigma_t, p)`` (UniC) corrects the state the new
    evaluation landed on (m stays evaluated at the prediction). ``state`` = (outputs, their σ's,
    the previous step's start and order). ``lower_order_final`` caps step i at order n - i when
    there are fewer than ``lower_order_below`` steps."""
    ms, hist, x_prev, p_prev = state if state is not None else ([], [], None, None)
    sigma, sigma_next = step.sigma, step.sigma_next
    denoised = denoiser(x, sigma)
    m = model_output(x, denoised, sigma, prediction)
    if correct is not None and x_prev is not None and sigma_next > 0:
        x = correct(x_prev, ms, hist, m, sigma, p_prev)
    ms, hist = (ms + [m])[-order:], (hist + [sigma])[-order:]
    if sigma_next == 0:
        return denoised, denoised, None
    p = step_order(order, step.i, step.n, len(ms), lower_order_final, lower_order_below)
    return update(x, ms, hist, sigma_next, p), denoised, (ms, hist, x, p)


def check_options(order: int, prediction: str | None = None, method: str | None = None, orders=(1, 2, 3)):
    """ValueError naming the bad option."""
    if isinstance(order, bool) or order not in orders:
        raise ValueError(f"order must be one of {orders}, got {order!r}")
    if prediction is not None and prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if method is not None and method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


@register("dpm-solver", prediction="noise", order=3, method="singlestep")
@register("dpm-solver-1", prediction="noise", order=1, method="singlestep")
@register("dpm-solver-2", prediction="noise", order=2, method="singlestep")
@register("dpm-solver-3", prediction="noise", order=3, method="singlestep")
@register("dpm-solver-2m", prediction="noise", order=2, method="multistep")
@register("dpm-solver-3m", prediction="noise", order=3, method="multistep")
@register("dpmpp", prediction="data", order=2, method="multistep")
@register("dpmpp-2m", prediction="data", order=2, method="multistep")
@register("dpmpp-2s", prediction="data", order=2, method="singlestep")
@register("dpmpp-3s", prediction="data", order=3, method="singlestep")
@register("dpmpp-3m", prediction="data", order=3, method="multistep")
def dpm_solver(denoiser, x, step, state=None, *, order: int = 3, method: str = "singlestep",
               prediction: str = "noise", lower_order_final: bool = True):
    """DPM-Solver-k (Lu et al. 2022, Alg. 1-2) with noise prediction, DPM-Solver++(kS/kM)
    (Lu et al. 2022b, Alg. 1-2) with data prediction; singlestep or multistep, order 1-3
    (lower_order_final applies to multistep)."""
    check_options(order, prediction, method)
    if method == "multistep":
        update = partial(multistep_update, prediction=prediction)
        return multistep(denoiser, x, step, state, update, order=order, prediction=prediction,
                         lower_order_final=lower_order_final)
    denoised = denoiser(x, step.sigma)
    m0 = model_output(x, denoised, step.sigma, prediction)
    return singlestep_update(denoiser, x, step.sigma, step.sigma_next, m0, order, prediction), denoised, None


_sub_sigma = sub_sigma    # the old private name
