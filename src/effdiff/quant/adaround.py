"""Learned rounding (AdaRound, Nagel et al. 2020; BRECQ, Li et al. 2021): each weight rounds up or
down by a learned soft mask h(V) ∈ [0, 1], fitted so the output on calibration inputs matches the
full-precision output, with a regulariser that anneals h to {0, 1}.

    W̃ = s (clamp(⌊W/s⌋ + h(V) + z, qmin, qmax) - z),   h(V) = clamp(σ(V)(ζ - γ) + γ, 0, 1)
    loss = ||f(x̃; W̃) - f(x; W)||² + λ Σ (1 - |2h(V) - 1|^β),   β annealed from 20 to 2

``adaround`` fits one layer's output; ``brecq`` fits a whole block's output (every quantized layer
inside it at once, with its activation quantizers active), which is BRECQ's block reconstruction:
the rounding of one layer can compensate the error of another in the same residual block.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .layers import run_with
from .quantizer import QuantSpec

ZETA, GAMMA = 1.1, -0.1


def _h(v: torch.Tensor) -> torch.Tensor:
    return (torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)


class Rounding:
    """One weight's learnable rounding: ``soft()`` (for the loss), ``hard()`` (the result), ``reg(β)``."""

    def __init__(self, w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, spec: QuantSpec):
        self.scale, self.zero, self.spec = scale, zero, spec
        self.floor = torch.floor(w / scale)
        rest = (w / scale - self.floor).clamp(1e-4, 1 - 1e-4)
        self.v = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))   # h(v) = rest at the start

    def _weight(self, h: torch.Tensor) -> torch.Tensor:
        return self.scale * (torch.clamp(self.floor + h + self.zero, self.spec.qmin, self.spec.qmax) - self.zero)

    def soft(self) -> torch.Tensor:
        return self._weight(_h(self.v))

    def hard(self) -> torch.Tensor:
        with torch.no_grad():
            return self._weight((_h(self.v) >= 0.5).float())

    def reg(self, beta: float) -> torch.Tensor:
        return (1 - (2 * _h(self.v) - 1).abs().pow(beta)).sum() / self.v.numel()


def fit(roundings: list[Rounding], loss_fn: Callable[[], torch.Tensor], iters: int, lam: float = 0.01,
        lr: float = 1e-2, warmup: float = 0.2) -> None:
    """Adam on every rounding's V: reconstruction loss, then the annealed rounding regulariser."""
    opt = torch.optim.Adam([r.v for r in roundings], lr=lr)
    with torch.enable_grad():
        for i in range(iters):
            loss = loss_fn()
            frac = (i / max(1, iters - 1) - warmup) / (1 - warmup)
            if frac > 0:
                beta = 2 + 18 * 0.5 * (1 + math.cos(math.pi * frac))
                loss = loss + lam * sum(r.reg(beta) for r in roundings)
            opt.zero_grad()
            loss.backward()
            opt.step()


def adaround(layer: nn.Module, scale: torch.Tensor, zero: torch.Tensor, spec: QuantSpec, x_fp: torch.Tensor,
             x_q: torch.Tensor, iters: int = 200, **kw) -> torch.Tensor:
    """The fake-quantized weight of ``layer`` with rounding learned on inputs ``x_fp`` (target) /
    ``x_q`` (what the quantized layer sees)."""
    w = layer.weight.detach()
    with torch.no_grad():
        target = run_with(layer, x_fp, w)
    r = Rounding(w, scale, zero, spec)
    fit([r], lambda: F.mse_loss(run_with(layer, x_q, r.soft()), target), iters, **kw)
    return r.hard()


def brecq(block: nn.Module, hooks: dict, roundings: dict, io: list, iters: int = 200, **kw) -> dict:
    """Block reconstruction: learn the rounding of every quantized layer of ``block`` at once.

    ``hooks``: layer name -> its attached ``QuantHook`` (whose ``weight`` is swapped for the soft
    weight during the fit); ``roundings``: layer name -> ``Rounding``; ``io``: (run, target) pairs,
    ``run()`` calling the block on recorded full-precision inputs (inside the step's loop context)
    and ``target`` its full-precision output. Returns layer name -> hard-rounded weight."""
    def loss():
        for n, r in roundings.items():
            hooks[n].weight = r.soft()
        return sum(F.mse_loss(run(), target) for run, target in io) / len(io)
    fit(list(roundings.values()), loss, iters, **kw)
    out = {n: r.hard() for n, r in roundings.items()}
    for n, w in out.items():
        hooks[n].weight = w
    return out
