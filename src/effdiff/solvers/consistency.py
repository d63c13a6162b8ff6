"""Multistep consistency sampling (Song et al. 2023, "Consistency Models", Alg. 1): a consistency
model maps any point of a trajectory to its origin, so one step is x0 = f(x, σ), then fresh
noise takes it to the next level. With σ' = 0 (the driver's final step) it returns f(x, σ)."""
from __future__ import annotations

from . import register


@register("consistency")
def consistency(denoiser, x, step, state=None):
    """Multistep consistency sampling (Song et al. 2023, Alg. 1): x0 = f(x, σ), then fresh noise
    to the next level, x' = x0 + σ' z."""
    x0 = denoiser(x, step.sigma)
    return x0 + step.noise(x0) * step.sigma_next, x0, None
