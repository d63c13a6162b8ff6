"""Range observers: the clipping range [lo, hi] of each row of values (one row per scale).

- ``minmax``: the extremes (naive PTQ).
- ``percentile``: the p-th / (100-p)-th percentiles (clips rare outliers; PTQ4DM, Q-Diffusion use it
  for activations).
- ``mse``: the shrink of the min-max range that minimises the quantization MSE, searched on a grid
  (Banner et al. 2019; Q-Diffusion's weight/activation calibration).

Each is ``observer(x [R, N], spec) -> (lo [R], hi [R])``; ``OBSERVERS`` is the registry.
"""
from __future__ import annotations

from typing import Callable

import torch

from .quantizer import QuantSpec, fake_quant, qparams

Tensor = torch.Tensor
MAX_VALUES = 1 << 20          # torch.quantile's limit is 16M; subsample rows longer than this


def minmax(x: Tensor, spec: QuantSpec) -> tuple[Tensor, Tensor]:
    """The row extremes."""
    return x.amin(1), x.amax(1)


def percentile(x: Tensor, spec: QuantSpec, p: float = 99.99) -> tuple[Tensor, Tensor]:
    """The (100-p)-th and p-th percentiles of each row."""
    if x.shape[1] > MAX_VALUES:
        x = x[:, torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(0))[:MAX_VALUES]]
    q = torch.quantile(x.float(), torch.tensor([1 - p / 100, p / 100], device=x.device), dim=1)
    return q[0], q[1]


def mse(x: Tensor, spec: QuantSpec, grid: int = 40, lowest: float = 0.3) -> tuple[Tensor, Tensor]:
    """The shrink α ∈ [lowest, 1] of the min-max range with the least squared quantization error per row."""
    lo0, hi0 = minmax(x, spec)
    best = torch.full_like(lo0, float("inf"))
    best_lo, best_hi = lo0.clone(), hi0.clone()
    for a in torch.linspace(lowest, 1.0, grid).tolist():
        s, z = qparams(lo0 * a, hi0 * a, spec)
        err = (fake_quant(x, s[:, None], z[:, None], spec) - x).pow(2).sum(1)
        better = err < best
        best = torch.where(better, err, best)
        best_lo, best_hi = torch.where(better, lo0 * a, best_lo), torch.where(better, hi0 * a, best_hi)
    return best_lo, best_hi


OBSERVERS: dict[str, Callable[[Tensor, QuantSpec], tuple[Tensor, Tensor]]] = {
    "minmax": minmax, "percentile": percentile, "mse": mse}


def get(name: str) -> Callable:
    if name not in OBSERVERS:
        raise KeyError(f"unknown observer {name!r}; known: {', '.join(OBSERVERS)}")
    return OBSERVERS[name]
