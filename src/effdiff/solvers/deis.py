"""DEIS (Zhang & Chen 2022): exponential integrators with polynomial extrapolation of ε_θ.

In VE form (x = x0 + σ ε) the linear part of the probability-flow ODE vanishes, dx/dσ = ε_θ(x, σ),
so the exponential integrator is x' = x + ∫_σ^σ' ε dσ with ε_θ replaced by the Lagrange
polynomial through the last k evaluations in the variable ρ. variable="sigma" (default)
extrapolates in ρ = σ (the paper's ρ = σ/α, its ρAB-DEIS; identical to ``lms``);
variable="log-sigma" extrapolates in log σ (the paper's tAB-DEIS on a VE-SDE, whose t is
affine in log σ), integrated against the weight dσ = σ dlog σ.
"""
from __future__ import annotations

import math

import numpy as np

from . import register
from .multistep import adams_bashforth, check_order, lagrange_integrals, sigma_coeffs


def log_sigma_coeffs(sig, sigma_next: float) -> list[float]:
    """Weights c_j of x' = x + Σ c_j ε_j for ε a polynomial in log σ: ∫ ℓ_j(u) e^u du over
    [log σ_i, log σ_{i+1}] (16-point Gauss–Legendre: float64 precision for log-steps up to ~10)."""
    u = [math.log(s) for s in sig]
    return lagrange_integrals(u, u[0], math.log(sigma_next), weight=np.exp)


VARIABLES = {"sigma": sigma_coeffs, "log-sigma": log_sigma_coeffs}


@register("deis")
@register("deis-1", order=1)
@register("deis-2", order=2)
@register("deis-3", order=3)
def deis(denoiser, x, step, state=None, *, order: int = 3, variable: str = "sigma"):
    """AB-DEIS (Zhang & Chen 2022, ρAB/tAB-DEIS): multistep exponential integrator with
    ε_θ extrapolated by a degree order-1 polynomial; orders 1, 2, .. while history is short
    (as the paper); order 1 is DDIM. The step to σ = 0 returns D. NFE = steps."""
    if variable not in VARIABLES:
        raise ValueError(f"variable must be one of {', '.join(VARIABLES)}, got {variable!r}")
    return adams_bashforth(denoiser, x, step, state, order=check_order(order, 3), coeffs=VARIABLES[variable])
