"""Diff-Pruning's Taylor importance (Fang, Ma & Wang 2023, "Structural Pruning for Diffusion Models").

Gradients of the denoising loss are accumulated over timesteps from t = 0 (least noise) upwards,
and accumulation stops at the first timestep whose loss falls below ``thr`` x the largest loss
seen so far: the later, noisier steps carry little information about content (the paper's
threshold; its code uses thr = 0.05). A parameter's importance is |θ · ∇θ L|, summed over the
weights that make up one prunable channel.
"""
from __future__ import annotations

import torch

from .. import timesteps


def eps_loss(denoiser, x0: torch.Tensor, sigma: float, cond, gen: torch.Generator) -> torch.Tensor:
    """||ε̂ - ε||² with ε̂ = (x - D(x, σ)) / σ: the noise-prediction loss of any denoiser at one σ."""
    eps = torch.randn(x0.shape, generator=gen)
    x = x0 + sigma * eps
    d = denoiser(x, torch.full((len(x0),), sigma), cond)
    return ((x - d) / sigma - eps).pow(2).mean()


def taylor_gradients(denoiser, x0: torch.Tensor, cond=None, thr: float = 0.05, stride: int = 10,
                     seed: int = 0) -> dict:
    """Accumulate ∇L_t into the network's ``.grad`` for t = 0, stride, 2·stride, ... until
    L_t < thr · max L; returns {"timesteps": used, "losses": [...]} (grads are left on the parameters)."""
    net = denoiser.net
    proc = denoiser.process
    table = timesteps.full(proc) if getattr(proc, "discrete", False) else timesteps.uniform_t(1000, proc)
    sig = table.flip(0)[1:].tolist()       # ascending σ (t = 0 first), the final 0 dropped
    gen = torch.Generator().manual_seed(seed)
    net.zero_grad(set_to_none=True)
    net.requires_grad_(True)
    used, losses, loss_max = [], [], 0.0
    try:
        for t in range(0, len(sig), stride):
            loss = eps_loss(denoiser, x0, sig[t], cond, gen)
            loss.backward()
            v = float(loss.detach())
            used.append(t)
            losses.append(v)
            loss_max = max(loss_max, v)
            if v < loss_max * thr:
                break
    finally:
        net.requires_grad_(False)
    return {"timesteps": used, "losses": losses}


def taylor(p: torch.Tensor) -> torch.Tensor:
    """|θ · ∂L/∂θ| elementwise (zeros where no gradient reached)."""
    return (p.detach() * p.grad).abs() if p.grad is not None else torch.zeros_like(p)
