"""DDIM (Song et al. 2021) and DDPM ancestral sampling (Ho et al. 2020) in VE form.

In VE coordinates DDIM's update is x' = x0 + σ_down ε̂ + σ_up z with
σ_up = η sqrt(σ'² (σ² - σ'²) / σ²) and σ_down = sqrt(σ'² - σ_up²): η = 0 is the
deterministic DDIM (= Euler), η = 1 on the full training grid is DDPM's posterior sampling.
"""
from __future__ import annotations

import math

import torch

from ..context import current_context
from . import register


def ancestral_step(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """(σ_down, σ_up) of one ancestral step from σ to σ' (σ_up² + σ_down² = σ'²)."""
    if sigma_next == 0 or eta == 0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2))
    return math.sqrt(sigma_next ** 2 - sigma_up ** 2), sigma_up


def _less_carried_noise(sigma_up: float, x0_weight: float) -> float:
    """σ_up lowered by noise the denoised estimate already carries (PTQD, He et al. 2023: a quantized
    model's residual output noise of variance v, published in the loop context by its hook, reaches
    x' with weight ``x0_weight``): sqrt(max(σ_up² - x0_weight² v, 0)). Unchanged without such a hook."""
    ctx = current_context()
    var = ctx.state.get("x0_noise_var", 0.0) if ctx is not None else 0.0
    return math.sqrt(max(sigma_up ** 2 - x0_weight ** 2 * var, 0.0)) if var else sigma_up


@register("ddim")
@register("ddpm", eta=1.0)
@register("euler-ancestral", eta=1.0)
def ddim(denoiser, x, step, state=None, *, eta: float = 0.0, s_noise: float = 1.0):
    """DDIM with stochasticity eta (Song et al. 2021, eq. 12); eta=1 is DDPM ancestral
    sampling (Ho et al. 2020) and k-diffusion's Euler-ancestral."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    sigma = step.sigma
    denoised = denoiser(x, sigma)
    sigma_down, sigma_up = ancestral_step(sigma, step.sigma_next, eta)
    x = torch.lerp(denoised, x, sigma_down / sigma)
    if sigma_up > 0:
        sigma_up = _less_carried_noise(sigma_up, 1 - sigma_down / sigma)
        x = x + step.noise(x) * (s_noise * sigma_up)
    return x, denoised, None
