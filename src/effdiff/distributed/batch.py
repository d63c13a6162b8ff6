"""Batch-parallel evaluation of a denoiser: each rank evaluates its share of the batch and an
all-gather returns the whole. Two methods are this one transform:

- CFG parallel: ``guided(BatchParallel(D), w)`` — guidance evaluates ``[x; x]`` with ``[cond; null]``
  in one call, so on 2 ranks the conditional branch runs on rank 0 and the unconditional on rank 1
  (xDiT's CFG parallel; Ho & Salimans 2022 guidance).
- Parallel-in-time across ranks: ParaDiGMS / ParaTAA evaluate a window of p steps as one call of
  batch p·B (Shih et al. 2023), which ``BatchParallel`` splits across ranks.

Every rank receives the same gathered bytes, so all ranks keep identical trajectories.
"""
from __future__ import annotations

import torch
from torch import nn

from ..denoisers import as_batch_sigma, guided
from .comm import Comm

Tensor = torch.Tensor


class BatchParallel(nn.Module):
    """``D(x, sigma, cond)`` with the batch split over the ranks of ``comm`` (contiguous shares,
    rank order; ``comm.bytes_sent`` counts the gathers)."""

    def __init__(self, denoiser, comm: Comm | None = None):
        super().__init__()
        if not callable(denoiser):
            raise TypeError(f"denoiser must be callable, got {type(denoiser).__name__}")
        self.denoiser, self.comm = denoiser, comm or Comm()

    @property
    def cond_classes(self) -> int:
        return getattr(self.denoiser, "cond_classes", 0)

    @property
    def null_class(self):
        return getattr(self.denoiser, "null_class", None)

    @property
    def process(self):
        return self.denoiser.process

    def forward(self, x: Tensor, sigma, cond=None) -> Tensor:
        R, r = self.comm.size, self.comm.rank
        if R == 1:
            return self.denoiser(x, sigma, cond)
        sigma = as_batch_sigma(sigma, x)
        B = x.shape[0]
        m = -(-B // R)                                  # the largest share
        lo, hi = min(r * m, B), min((r + 1) * m, B)
        out = x.new_zeros((m, *x.shape[1:]))
        if hi > lo:
            c = cond[lo:hi] if torch.is_tensor(cond) and cond.ndim > 0 and cond.shape[0] == B else cond
            out[:hi - lo] = self.denoiser(x[lo:hi], sigma[lo:hi], c).to(x.dtype)
        return torch.cat(self.comm.all_gather(out))[:B]


def cfg_parallel(denoiser, scale: float, comm: Comm | None = None, **guidance):
    """Classifier-free guidance with its two branches on different ranks (2 ranks: one branch
    each; 2k ranks: each branch shared by k). Exact: the same math as ``guided(denoiser, scale)``."""
    return guided(BatchParallel(denoiser, comm), scale, **guidance)
