"""SA-Solver (Xue et al. 2023, "SA-Solver: Stochastic Adams Solver for Fast Sampling of
Diffusion Models"): stochastic Adams predictor-corrector in data prediction.

On each step σ → σ' (h = λ' - λ, λ = -log σ) the SDE family with noise weight τ(σ)² is solved
with its linear part exact (see solvers/sde.py):

    x' = (σ'/σ) e^{-τ² h} x + Σ_j b_j D_j + σ' sqrt(1 - e^{-2τ²h}) ξ,
    b_j = ∫_0^h (1+τ²) e^{-(1+τ²) u} ℓ_j(u) du        (u = λ' - λ)

where ℓ_j are the Lagrange basis polynomials through the nodes λ_j of the data predictions
D_j: the last ``predictor_order`` evaluations for the predictor (Adams–Bashforth), those plus
the evaluation at the predicted point for the corrector (Adams–Moulton; ``corrector_order``
points in all, 0 = no corrector). The corrector reuses the predictor's ξ and the evaluation at
the predicted point is reused by the next predictor (1 NFE per step). τ = 0 is a deterministic
multistep exponential integrator of order ``predictor_order``.
"""
from __future__ import annotations

import math

import numpy as np

from . import register
from .sde import sde_noise_std

# the recommended τ: 1 in the middle of the noise range, 0 at its ends (the paper's default,
# diffusers' t ∈ [200, 800] on Stable Diffusion's schedule, i.e. σ ≈ 0.57 … 5.1)
TAU_INTERVAL = (0.5, 5.0)


def _moments(H: float, kmax: int) -> list[float]:
    """J_k = ∫_0^1 v^k e^{-H v} dv for k = 0..kmax, stable for every H ≥ 0."""
    out = []
    for k in range(kmax + 1):
        if H < 20:  # k! e^{-H} Σ_j H^j / (k+1+j)!: positive terms, no cancellation
            term, total, j = 1.0 / math.factorial(k + 1), 0.0, 0
            while term > 1e-18 * total or j < 2:
                total += term
                j += 1
                term *= H / (k + 1 + j)
            out.append(math.factorial(k) * math.exp(-H) * total)
        else:       # k!/H^{k+1} (1 - e^{-H} Σ_{m≤k} H^m/m!): no cancellation for large H
            tail = math.exp(-H) * sum(H ** m / math.factorial(m) for m in range(k + 1))
            out.append(math.factorial(k) / H ** (k + 1) * (1 - tail))
    return out


def sa_coefficients(lambdas: list[float], lam: float, lam_next: float, tau: float) -> list[float]:
    """b_j = ∫_λ^λ' (1+τ²) e^{-(1+τ²)(λ'-s)} ℓ_j(s) ds for Lagrange nodes ``lambdas`` (Xue et al.
    2023, eqs. 14 and 16, data prediction; any number of nodes, any spacing)."""
    h = lam_next - lam
    c = 1 + tau * tau
    v = np.array([(lam_next - l) / h for l in lambdas])   # nodes in v = (λ' - s) / h
    J = np.array(_moments(c * h, len(v) - 1))              # ∫_0^1 v^k e^{-chv} dv
    b = []
    for j in range(len(v)):
        others = np.delete(v, j)
        poly = np.atleast_1d(np.poly(others))[::-1] / np.prod(v[j] - others)   # ℓ_j(v), increasing powers
        b.append(float(c * h * (poly @ J)))
    return b


def _sa_step(x, sigma: float, sigma_next: float, tau: float, lambdas, ds, xi):
    """One stochastic Adams step σ → σ' from x with data predictions ``ds`` at ``lambdas``."""
    h = math.log(sigma) - math.log(sigma_next)
    b = sa_coefficients(lambdas, -math.log(sigma), -math.log(sigma_next), tau)
    out = x * ((sigma_next / sigma) * math.exp(-tau * tau * h))
    for bj, dj in zip(b, ds):
        out = out + dj * bj
    if xi is not None:
        out = out + xi * sde_noise_std(sigma_next, h, tau * tau)
    return out


def _tau_fn(tau, tau_interval):
    if tau is None:
        lo, hi = tau_interval
        if not 0 <= lo <= hi:
            raise ValueError(f"tau_interval must be (lo, hi) with 0 <= lo <= hi, got {tau_interval!r}")
        return lambda s: 1.0 if lo <= s <= hi else 0.0
    if callable(tau):
        return tau
    if float(tau) < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    return lambda s: float(tau)


@register("sa-solver")
def sa_solver(denoiser, x, step, state=None, *, tau=None, tau_interval=TAU_INTERVAL,
              predictor_order: int = 3, corrector_order: int = 3, s_noise: float = 1.0):
    """SA-Solver (Xue et al. 2023, Alg. 1): stochastic Adams-Bashforth predictor + Adams-Moulton
    corrector in data prediction. tau: a constant, a callable τ(σ) (evaluated at each step's
    start σ), or None for the paper's default τ=1 on ``tau_interval`` and 0 outside. Orders
    warm up on the first steps; the step to σ=0 returns the data prediction. state = (nodes λ,
    data predictions, (x, σ, τ, ξ) at the previous step's start for the corrector)."""
    if predictor_order not in (1, 2, 3, 4):
        raise ValueError(f"predictor_order must be 1..4, got {predictor_order}")
    if corrector_order not in (0, 1, 2, 3, 4):
        raise ValueError(f"corrector_order must be 0..4 (0 = no corrector), got {corrector_order}")
    if s_noise < 0:
        raise ValueError(f"s_noise must be >= 0, got {s_noise}")
    tau_of = _tau_fn(tau, tau_interval)
    lambdas, ds, prev = state if state is not None else ([], [], None)   # newest last
    sigma, sigma_next = step.sigma, step.sigma_next
    denoised = denoiser(x, sigma)
    lambdas, ds = (lambdas + [-math.log(sigma)])[-4:], (ds + [denoised])[-4:]
    if prev is not None and corrector_order > 0:   # Adams–Moulton, previous step
        n = min(corrector_order, len(ds))
        x = _sa_step(prev[0], prev[1], sigma, prev[2], lambdas[-n:], ds[-n:], prev[3])
    t = float(tau_of(sigma))
    if t < 0:
        raise ValueError(f"tau(σ) must be >= 0, got {t} at σ={sigma:.4g}")
    xi = step.noise(x) * s_noise if t > 0 else None
    n = min(predictor_order, len(ds))
    return _sa_step(x, sigma, sigma_next, t, lambdas[-n:], ds[-n:], xi), denoised, (lambdas, ds, (x, sigma, t, xi))
