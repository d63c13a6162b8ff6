"""Condition maps computed from the images themselves (no downloads), and adherence to them.

    c = condition("edges", x)                # Sobel edge strength in [-1, 1], same shape as x
    adherence("edges", samples, c)           # {"mse": ..., "iou": ...}: the samples' own map vs c

Maps: ``edges`` (Sobel gradient magnitude, Kanopoulos et al. 1988), ``mask`` (ink > 0), ``sketch``
(a 2x average-pooled, nearest-upsampled copy: a low-resolution sketch). Each map is in [-1, 1];
``iou`` compares the binarised maps (> 0). ``condition(name, x, size=7)`` area-resizes the image's map
to a latent model's grid (mnist-ldm-dit: 28x28 images, 7x7 latents).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def edges(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of [B, C, H, W] images in [-1, 1], mapped to [-1, 1] (8, a full step edge, = 1)."""
    k = torch.stack([_SOBEL, _SOBEL.t()])[:, None].to(x)               # [2, 1, 3, 3]
    c = x.shape[1]
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.repeat(c, 1, 1, 1), groups=c)  # [B, 2C, H, W]
    mag = g.reshape(x.shape[0], c, 2, *x.shape[-2:]).pow(2).sum(2).sqrt()
    return (mag / 8.0).clamp(max=1.0) * 2 - 1


def mask(x: torch.Tensor) -> torch.Tensor:
    """Ink mask: +1 where the image is above mid-grey, -1 elsewhere."""
    return torch.where(x > 0, 1.0, -1.0).to(x)


def sketch(x: torch.Tensor) -> torch.Tensor:
    """Low-resolution sketch: 2x2 average pooling then nearest upsampling."""
    return F.interpolate(F.avg_pool2d(x, 2), scale_factor=2.0, mode="nearest")


CONDITIONS = {"edges": edges, "mask": mask, "sketch": sketch}


def condition(name: str, x: torch.Tensor, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """The map ``name`` of images x [B, C, H, W]; with ``size``, area-resized to that grid (a latent
    model's: the map is computed on the image, then averaged over each latent cell)."""
    if name not in CONDITIONS:
        raise KeyError(f"unknown condition {name!r}; known: {', '.join(CONDITIONS)}")
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"condition maps need images [B, C, H, W], got {getattr(x, 'shape', type(x).__name__)}")
    c = CONDITIONS[name](x.float())
    return c if size is None else resize(c, size)


def resize(c: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """A condition map [B, C, H, W] area-averaged to ``size`` (unchanged when it already has it)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    return c if tuple(c.shape[-2:]) == size else F.interpolate(c, size=size, mode="area")


def adherence(name: str, samples: torch.Tensor, cond: torch.Tensor) -> dict:
    """How well samples follow ``cond``: MSE between the samples' own map and cond (lower is better),
    and IoU of the binarised maps (higher is better); per-sample means."""
    if samples.shape != cond.shape:
        raise ValueError(f"samples {tuple(samples.shape)} and condition {tuple(cond.shape)} differ in shape")
    got = condition(name, samples.clamp(-1, 1))
    dims = tuple(range(1, cond.ndim))
    a, b = got > 0, cond > 0
    inter, union = (a & b).sum(dims).float(), (a | b).sum(dims).float()
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return {"mse": float((got - cond).pow(2).mean(dims).mean()), "iou": float(iou.mean())}
