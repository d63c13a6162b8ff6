"""Distillation losses, written once: the truncated-SNR weighted x0 error (Salimans & Ho 2022)
and the pseudo-Huber metric (Song & Dhariwal 2023, iCT)."""
from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


def snr_trunc_mse(pred: Tensor, target: Tensor, sigma: Tensor) -> Tensor:
    """max(SNR, 1) ||x̂0 - x0||² per sample, SNR = 1/σ² (Salimans & Ho 2022, 'truncated SNR')."""
    w = (1 / sigma.double() ** 2).clamp(min=1.0).to(pred.dtype)
    return w * ((pred - target) ** 2).flatten(1).mean(1)


def pseudo_huber(a: Tensor, b: Tensor, c: float | None = None) -> Tensor:
    """sqrt(||a - b||² + c²) - c per sample, c = 0.00054 sqrt(d) (Song & Dhariwal 2023, Sec. 3.3)."""
    d = a[0].numel()
    c = 0.00054 * math.sqrt(d) if c is None else c
    return torch.sqrt(((a - b) ** 2).flatten(1).sum(1) + c * c) - c
