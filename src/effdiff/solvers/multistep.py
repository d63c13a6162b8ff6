"""Linear multistep solvers on the VE-form probability-flow ODE dx/dσ = ε(x, σ), ε = (x - D(x, σ)) / σ.

One model evaluation per step: past ε's are reused through Adams–Bashforth combinations.
``lms`` (k-diffusion) integrates the Lagrange polynomial through past ε's exactly over each
σ step (variable-step Adams–Bashforth in σ). ``pndm`` / ``ipndm`` (Liu et al. 2022; Zhang &
Chen 2022) use the fixed uniform-grid Adams–Bashforth weights on ε inside the DDIM transfer,
which in VE form is x' = D + (σ'/σ)(x - D) = x + (σ' - σ) ε.

Shared rules: a k-step method warms up with the orders its history allows (1, 2, .., k) —
PNDM instead warms up with pseudo Runge–Kutta steps (4 NFE each, as the paper) — and the
last step to σ = 0 returns the data prediction D(x, σ_{n-1}) (DDIM's rule; the extrapolated
ε is not used there). A first-order first step leaves an O(h²) start-up error, so a k-step
method is k-th order only while that term (∝ dε/dσ at σ_max, small at high noise) is below
the k-th order one: measured on Gaussian-mixture data in tests/test_solvers_multistep.py.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from . import register

# Adams–Bashforth weights of a uniform grid, newest ε first (Hairer, Nørsett & Wanner I, III.1).
AB = {1: (1.0,), 2: (3 / 2, -1 / 2), 3: (23 / 12, -16 / 12, 5 / 12), 4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}


def check_order(order, max_order: int = 4) -> int:
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= max_order:
        raise ValueError(f"order must be an integer in 1..{max_order}, got {order!r}")
    return order


def lagrange_integrals(nodes: Sequence[float], a: float, b: float,
                       weight: Callable[[np.ndarray], np.ndarray] | None = None, points: int | None = None) -> list[float]:
    """∫_a^b ℓ_j(τ) w(τ) dτ for the Lagrange basis ℓ_j through ``nodes`` (float64 Gauss–Legendre:
    exact for w = 1, where the integrand is a polynomial of degree len(nodes) - 1)."""
    t = np.asarray(nodes, dtype=np.float64)
    k = len(t)
    if points is None:
        points = k // 2 + 1 if weight is None else 16
    s, gw = np.polynomial.legendre.leggauss(points)
    tau = a + (b - a) * (s + 1) / 2                      # quadrature points on [a, b]
    gw = gw * (b - a) / 2 * (weight(tau) if weight is not None else 1.0)
    out = []
    for j in range(k):
        others = np.delete(t, j)
        ell = np.prod((tau[:, None] - others) / (t[j] - others), axis=1) if k > 1 else np.ones_like(tau)
        out.append(float(gw @ ell))
    return out


def sigma_coeffs(sig: Sequence[float], sigma_next: float) -> list[float]:
    """Weights c_j of x' = x + Σ c_j ε_j, ε a polynomial in σ through (sig[j], ε_j), sig[0] current."""
    return lagrange_integrals(sig, sig[0], sigma_next)


def adams_bashforth(denoiser, x, step, state, *, order: int, coeffs=sigma_coeffs):
    """One variable-step Adams–Bashforth step on dx/dσ = ε: x' = x + Σ_j c_j ε_{i-j}, with the
    weights ``coeffs(σ_i, σ_{i-1}, ..; σ_{i+1})``; order min(history, order). state = (ε's, σ's)."""
    eps, sig = state if state is not None else ([], [])
    sigma = step.sigma
    denoised = denoiser(x, sigma)
    eps, sig = ([(x - denoised) / sigma] + eps)[:order], ([sigma] + sig)[:order]
    x = x + sum(c * e for c, e in zip(coeffs(sig, step.sigma_next), eps))
    return x, denoised, (eps, sig)


@register("lms")
def lms(denoiser, x, step, state=None, *, order: int = 4):
    """Linear multistep in σ (k-diffusion's ``sample_lms``; Adams–Bashforth with the Lagrange
    polynomial of past ε = (x - D)/σ integrated exactly over [σ_i, σ_{i+1}]). NFE = steps."""
    return adams_bashforth(denoiser, x, step, state, order=check_order(order))


def ddim_transfer(x, e, sigma: float, sigma_next: float):
    """PNDM's transfer φ(x, ε, σ → σ') (Liu et al. 2022) in VE form: the DDIM step
    x' = D + (σ'/σ)(x - D) with D = x - σ ε, i.e. x + (σ' - σ) ε."""
    return x + e * (sigma_next - sigma)


def _eps(denoiser, x, sigma: float):
    denoised = denoiser(x, sigma)
    return (x - denoised) / sigma, denoised


def prk_eps(denoiser, x, e1, sigma: float, sigma_next: float):
    """Pseudo Runge–Kutta gradient e' = (e1 + 2 e2 + 2 e3 + e4) / 6 (Liu et al. 2022, PRK);
    the half step is the σ midpoint, so in VE form this is classical RK4 in σ. 3 extra NFE."""
    sigma_mid = (sigma + sigma_next) / 2
    e2, _ = _eps(denoiser, ddim_transfer(x, e1, sigma, sigma_mid), sigma_mid)
    e3, _ = _eps(denoiser, ddim_transfer(x, e2, sigma, sigma_mid), sigma_mid)
    e4, _ = _eps(denoiser, ddim_transfer(x, e3, sigma, sigma_next), sigma_next)
    return (e1 + 2 * e2 + 2 * e3 + e4) / 6


def pie_eps(denoiser, x, e1, sigma: float, sigma_next: float):
    """Pseudo improved Euler gradient e' = (e1 + e2) / 2 (Liu et al. 2022, S-PNDM; the first
    step of LDM's PLMS). 1 extra NFE."""
    e2, _ = _eps(denoiser, ddim_transfer(x, e1, sigma, sigma_next), sigma_next)
    return (e1 + e2) / 2


WARMUPS = {"prk": prk_eps, "pie": pie_eps, "lower-order": None}


@register("pndm")
@register("ipndm", warmup="lower-order")
def pndm(denoiser, x, step, state=None, *, order: int = 4, warmup: str = "prk"):
    """Pseudo linear multistep with the DDIM transfer (Liu et al. 2022, F-PNDM):
    ε' = uniform-grid Adams–Bashforth of past ε's, x' = φ(x, ε', σ → σ').

    warmup: "prk" (F-PNDM, default): the first order-1 steps are pseudo Runge–Kutta steps;
    "pie": the first step is pseudo improved Euler (S-PNDM; LDM's PLMS), then orders 2, 3, ..;
    "lower-order" (``ipndm``, Zhang & Chen 2022, DEIS App.): orders 1, 2, .. from history.
    NFE for n steps: n + 3 min(order - 1, n - 1) (prk), n + 1 (pie, n >= 2, order >= 2), n.
    The weights assume equal steps (as the papers do): on σ-uniform grids ``ipndm`` is ``lms``,
    on smoothly varying ones (Karras, exponential) the fixed weights make it 2nd order; use
    ``lms`` for variable-step weights. The PRK half step is the σ midpoint (the paper's is
    in its own t), which makes the PRK steps classical RK4 in σ. A segment's warm-up counts
    from its first step.
    """
    check_order(order)
    if warmup not in WARMUPS:
        raise ValueError(f"warmup must be one of {', '.join(WARMUPS)}, got {warmup!r}")
    start = WARMUPS[warmup]
    warm_steps = 0 if start is None or order == 1 else (order - 1 if warmup == "prk" else 1)
    eps, taken = state if state is not None else ([], 0)
    sigma, sigma_next = step.sigma, step.sigma_next
    e, denoised = _eps(denoiser, x, sigma)
    eps = ([e] + eps)[:order]
    if taken < warm_steps:
        e_prime = start(denoiser, x, e, sigma, sigma_next)
    else:
        e_prime = sum(b * ej for b, ej in zip(AB[len(eps)], eps))
    return ddim_transfer(x, e_prime, sigma, sigma_next), denoised, (eps, taken + 1)
