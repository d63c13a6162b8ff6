"""Learned rounding (AdaRound, Nagel et al. 2020; BRECQ, Li et al. 2021): each weight rounds up or
down by a learned soft mask h(V) ∈ [0, 1], fitted so the layer's output on calibration inputs
matches the full-precision output, with a regulariser that anneals h to {0, 1}.

    W̃ = s (clamp(⌊W/s⌋ + h(V) + z, qmin, qmax) - z),   h(V) = clamp(σ(V)(ζ - γ) + γ, 0, 1)
    loss = ||f(x̃; W̃) - f(x; W)||² + λ Σ (1 - |2h(V) - 1|^β),   β annealed from 20 to 2
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .quantizer import QuantSpec

ZETA, GAMMA = 1.1, -0.1


def _h(v: torch.Tensor) -> torch.Tensor:
    return (torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)


def _run(layer: nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.Conv2d):
        return layer._conv_forward(x, w, layer.bias)
    return F.linear(x, w, layer.bias)


def adaround(layer: nn.Module, scale: torch.Tensor, zero: torch.Tensor, spec: QuantSpec, x_fp: torch.Tensor,
             x_q: torch.Tensor, iters: int = 200, lam: float = 0.01, lr: float = 1e-2, warmup: float = 0.2) -> torch.Tensor:
    """The fake-quantized weight of ``layer`` with rounding learned on inputs ``x_fp`` (target) /
    ``x_q`` (what the quantized layer sees)."""
    w = layer.weight.detach()
    with torch.no_grad():
        target = _run(layer, x_fp, w)
    floor = torch.floor(w / scale)
    rest = (w / scale - floor).clamp(1e-4, 1 - 1e-4)
    v = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))   # h(v) = rest at the start
    opt = torch.optim.Adam([v], lr=lr)
    with torch.enable_grad():
        for i in range(iters):
            wq = scale * (torch.clamp(floor + _h(v) + zero, spec.qmin, spec.qmax) - zero)
            loss = F.mse_loss(_run(layer, x_q, wq), target)
            frac = (i / max(1, iters - 1) - warmup) / (1 - warmup)
            if frac > 0:
                beta = 2 + 18 * 0.5 * (1 + math.cos(math.pi * frac))
                loss = loss + lam * (1 - (2 * _h(v) - 1).abs().pow(beta)).sum() / v.numel()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return scale * (torch.clamp(floor + (_h(v) >= 0.5).float() + zero,
                                    spec.qmin, spec.qmax) - zero)
