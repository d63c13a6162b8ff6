"""Karras et al. 2022 (EDM) samplers on the VE-form probability-flow ODE dx/dσ = (x - D(x, σ)) / σ,
with optional stochastic churn (EDM Algorithm 2)."""
from __future__ import annotations

import math

from . import register


def churn(x, sigma: float, noise, *, s_churn: float, s_tmin: float, s_tmax: float, s_noise: float, n: int):
    """EDM's churn: raise σ to σ̂ = σ (1 + γ) by adding fresh noise; returns (x̂, σ̂)."""
    gamma = min(s_churn / n, math.sqrt(2) - 1) if s_churn > 0 and s_tmin <= sigma <= s_tmax else 0.0
    if gamma == 0:
        return x, sigma
    sigma_hat = sigma * (1 + gamma)
    return x + noise(x) * s_noise * math.sqrt(sigma_hat ** 2 - sigma ** 2), sigma_hat


def _churned(x, step, noise_opts):
    """(x̂, σ̂) of this step after EDM's churn (σ̂ recorded on the step)."""
    x, step.sigma_hat = churn(x, step.sigma, step.noise, n=step.n, **noise_opts)
    return x, step.sigma_hat


@register("euler", final="step")
def euler(denoiser, x, step, state=None, *, s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0):
    """Euler on the probability-flow ODE (Karras et al. 2022, Alg. 2 without the 2nd-order
    correction); also the step to σ=0. With s_churn=0 this is exactly DDIM (eta=0)."""
    x, sigma_hat = _churned(x, step, dict(s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise))
    denoised = denoiser(x, sigma_hat)
    d = (x - denoised) / sigma_hat
    return x + d * (step.sigma_next - sigma_hat), denoised, None


@register("heun", final="step")
def heun(denoiser, x, step, state=None, *, s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0):
    """Heun's 2nd-order method (Karras et al. 2022, Alg. 2); Euler on the final step to σ=0.
    NFE = 2 n - 1 for n steps."""
    x, sigma_hat = _churned(x, step, dict(s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise))
    sigma_next = step.sigma_next
    denoised = denoiser(x, sigma_hat)
    d = (x - denoised) / sigma_hat
    dt = sigma_next - sigma_hat
    if sigma_next == 0:
        return x + d * dt, denoised, None
    x2 = x + d * dt
    d2 = (x2 - denoiser(x2, sigma_next)) / sigma_next
    return x + (d + d2) / 2 * dt, denoised, None
