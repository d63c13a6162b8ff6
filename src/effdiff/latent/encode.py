"""Images <-> latents with a KL autoencoder, in batches: the scale factor, the reconstruction
error and the encoded datasets that latent diffusion models train on."""
from __future__ import annotations

import math

import torch

BATCH = 500


@torch.no_grad()
def posterior_means(ae, x: torch.Tensor, batch: int = BATCH) -> torch.Tensor:
    """Unscaled posterior means E[z|x] of images x [N, C, H, W] -> [N, c, h, w]."""
    return torch.cat([ae.encode(x[i:i + batch])[0] for i in range(0, len(x), batch)])


@torch.no_grad()
def latent_stats(ae, x: torch.Tensor) -> dict:
    """LDM's scale factor: ``scale = 1 / std(z)`` over every element of the posterior means of x
    (so ``scale * z`` has unit variance, like the unit-variance noise the diffusion adds)."""
    z = posterior_means(ae, x).double()
    std = float(z.std())
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"encoded latents have std {std}; cannot set a latent scale")
    return {"scale": 1.0 / std, "std": std, "mean": float(z.mean()), "n": len(x)}


@torch.no_grad()
def reconstruction_error(ae, x: torch.Tensor, batch: int = BATCH) -> dict:
    """Per-pixel MSE and L1 of ``decode(E[z|x])`` against x (values in [-1, 1]), and the PSNR."""
    se = ae_ = 0.0
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        r = ae.decode(ae.encode(xb)[0])
        se += float((r - xb).double().pow(2).sum())
        ae_ += float((r - xb).double().abs().sum())
    mse, n = se / x.numel(), x.numel()
    return {"mse": mse, "l1": ae_ / n, "psnr_db": 10 * math.log10(4.0 / mse) if mse > 0 else math.inf}


@torch.no_grad()
def decode(ae, z: torch.Tensor, scale: float, batch: int = BATCH) -> torch.Tensor:
    """Scaled latents -> images: ``ae.decode(z / scale)``."""
    return torch.cat([ae.decode(z[i:i + batch] / scale) for i in range(0, len(z), batch)])


@torch.no_grad()
def encode(ae, x: torch.Tensor, scale: float, batch: int = BATCH) -> torch.Tensor:
    """Images -> scaled latents ``scale * E[z|x]``."""
    return posterior_means(ae, x, batch) * scale
