"""Samplers of the reverse SDE in VE form.

With σ as the time variable the forward process x = x0 + σ ε is dx = sqrt(2σ) dW (its
variance grows by 2σ dσ to σ²). Anderson's reverse-time SDE, with the score
∇ log p_σ(x) = (D(x, σ) - x) / σ², is

    dx = 2 (x - D(x, σ)) / σ dσ + sqrt(2σ) dW̄        (σ decreasing, dσ < 0)

i.e. twice the probability-flow drift plus Langevin noise; it has the same marginals
p_σ = p_data * N(0, σ² I) as the ODE dx/dσ = (x - D) / σ. In the half log-SNR λ = -log σ
the data-prediction exponential integrator of the SDE family with noise weight η = τ²
(Lu et al. 2022b, DPM-Solver++ SDE; Xue et al. 2023, SA-Solver) is exact in its linear
part: over h = λ' - λ,

    x' = (σ'/σ) e^{-η h} x + ∫ (1+η) e^{-(1+η)(λ'-u)} D(u) du + σ' sqrt(1 - e^{-2ηh}) z.

η = 0 is the probability-flow ODE, η = 1 the reverse SDE above.
"""
from __future__ import annotations

import math

from . import register


def sde_noise_std(sigma_next: float, h: float, eta: float) -> float:
    """Std σ' sqrt(1 - e^{-2ηh}) of the fresh noise of one data-prediction SDE step over λ-step
    h with noise weight η = τ² (Lu et al. 2022b, DPM-Solver++ SDE; Xue et al. 2023, eq. 13)."""
    return sigma_next * math.sqrt(-math.expm1(-2 * eta * h)) if eta > 0 else 0.0


def _check_noise_opts(eta: float, s_noise: float):
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    if s_noise < 0:
        raise ValueError(f"s_noise must be >= 0, got {s_noise}")


@register("euler-maruyama")
def euler_maruyama(denoiser, x, step, state=None, *, s_noise: float = 1.0):
    """Euler–Maruyama on the reverse SDE dx = 2 (x - D)/σ dσ + sqrt(2σ) dW̄ (Song et al. 2021,
    score SDE, eq. 6, in VE form): x' = x + 2 (x - D)/σ (σ' - σ) + sqrt(2σ (σ - σ')) z. Weak
    order 1; the step to σ=0 returns the data prediction D."""
    _check_noise_opts(0.0, s_noise)
    sigma, sigma_next = step.sigma, step.sigma_next
    denoised = denoiser(x, sigma)
    x = x + (x - denoised) * (2 * (sigma_next - sigma) / sigma)
    x = x + step.noise(x) * (s_noise * math.sqrt(2 * sigma * (sigma - sigma_next)))
    return x, denoised, None


@register("dpmpp-2m-sde")
def dpmpp_2m_sde(denoiser, x, step, state=None, *, eta: float = 1.0, s_noise: float = 1.0,
                 solver_type: str = "midpoint"):
    """DPM-Solver++(2M) SDE (Lu et al. 2022b, Sec. 5 / App. B; k-diffusion semantics): multistep
    2nd order on the SDE family with noise weight eta (0 = dpmpp-2m's ODE, 1 = reverse SDE).
    solver_type "midpoint" or "heun" picks the 2nd-order correction; the step to σ=0 returns D.
    state = (previous D, previous h)."""
    _check_noise_opts(eta, s_noise)
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"solver_type must be 'midpoint' or 'heun', got {solver_type!r}")
    old_denoised, h_last = state if state is not None else (None, None)
    sigma, sigma_next = step.sigma, step.sigma_next
    denoised = denoiser(x, sigma)
    h = math.log(sigma) - math.log(sigma_next)
    H = (1 + eta) * h                      # the exponent of the data term
    phi_1 = -math.expm1(-H)                # 1 - e^{-(1+η)h}
    x = (sigma_next / sigma) * math.exp(-eta * h) * x + phi_1 * denoised
    if old_denoised is not None:
        r = h_last / h
        c = phi_1 / 2 if solver_type == "midpoint" else 1 - phi_1 / H
        x = x + (c / r) * (denoised - old_denoised)
    if eta > 0:
        x = x + step.noise(x) * (s_noise * sde_noise_std(sigma_next, h, eta))
    return x, denoised, (denoised, h)


@register("dpmpp-3m-sde")
def dpmpp_3m_sde(denoiser, x, step, state=None, *, eta: float = 1.0, s_noise: float = 1.0):
    """DPM-Solver++(3M) SDE (Lu et al. 2022b, multistep 3rd order; k-diffusion's options):
    φ-function corrections from the last three data predictions on the SDE family with noise
    weight eta (0 = a deterministic 3rd-order multistep ODE solver); the step to σ=0 returns D.
    Deviation: the h² term is 2 φ3 d2 (k-diffusion: φ3 d2, half the Taylor term, which
    leaves it 2nd order; see dpm_solver.py). It equals sa-solver(predictor_order=3,
    corrector_order=0, tau=sqrt(eta)). state = (D_{-1}, D_{-2}, h_{-1}, h_{-2})."""
    _check_noise_opts(eta, s_noise)
    d_1, d_2, h_1, h_2 = state if state is not None else (None, None, None, None)
    sigma, sigma_next = step.sigma, step.sigma_next
    denoised = denoiser(x, sigma)
    h = math.log(sigma) - math.log(sigma_next)
    H = (1 + eta) * h
    x = (sigma_next / sigma) * math.exp(-eta * h) * x - math.expm1(-H) * denoised
    phi_2 = math.expm1(-H) / H + 1         # (H - 1 + e^{-H}) / H
    if h_2 is not None:
        r0, r1 = h_1 / h, h_2 / h
        d1_0 = (denoised - d_1) / r0
        d1_1 = (d_1 - d_2) / r1
        d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))
        d2 = (d1_0 - d1_1) / (r0 + r1)
        phi_3 = phi_2 / H - 0.5
        x = x + phi_2 * d1 - 2 * phi_3 * d2   # d2 ≈ h² D''/2 (see docstring)
    elif h_1 is not None:
        x = x + phi_2 * ((denoised - d_1) / (h_1 / h))
    if eta > 0:
        x = x + step.noise(x) * (s_noise * sde_noise_std(sigma_next, h, eta))
    return x, denoised, (denoised, d_1, h, h_1)
