"""Exact metrics for the 2-D toy densities in `effdiff.data`.

`exact_nll` scores samples under the true density (a sample-quality proxy: it rewards
samples that land where the data is, but a sampler that collapses onto the modes also
scores well, so pair it with `sliced_wasserstein`, Rabin et al. 2011, "Wasserstein
Barycenter and its Application to Texture Mixing").
"""

from __future__ import annotations

import torch

__all__ = ["exact_nll", "sliced_wasserstein"]


def exact_nll(toy, x: torch.Tensor, min_log_prob: float | None = None) -> float:
    """Mean negative log-likelihood of samples x [N, d] under the toy's TRUE density.

    Samples outside a bounded support (checkerboard) have log_prob = -inf, so the result
    is inf; pass `min_log_prob` to clamp each sample's log-density from below instead.
    """
    if not hasattr(toy, "log_prob"):
        raise TypeError("toy must have a log_prob(x) method")
    lp = toy.log_prob(x.detach().double().cpu()).double()
    if min_log_prob is not None:
        lp = lp.clamp_min(min_log_prob)
    return float(-lp.mean())


def _quantiles(sorted_v: torch.Tensor, n: int) -> torch.Tensor:
    """Values of sorted columns [N, P] at the n mid-point levels (i + 0.5) / n, linearly interpolated."""
    m = sorted_v.shape[0]
    if m == n:
        return sorted_v
    pos = ((torch.arange(n, dtype=torch.float64) + 0.5) * m / n - 0.5).clamp(0, m - 1)  # [n]
    lo = pos.floor().long()
    hi = (lo + 1).clamp_max(m - 1)
    w = (pos - lo).unsqueeze(1)
    return sorted_v[lo] * (1 - w) + sorted_v[hi] * w


def sliced_wasserstein(
    a: torch.Tensor, b: torch.Tensor, n_proj: int = 256, generator: torch.Generator | None = None
) -> float:
    """Sliced 2-Wasserstein distance sqrt(E_theta W2^2(theta.a, theta.b)) over random unit directions.

    Point clouds a [N, ...] and b [M, ...] are flattened to d features. Each 1-D W2 is
    computed from sorted projections; unequal sizes are compared at the max(N, M) mid-point
    quantiles. For b = a + s, the value is |s| / sqrt(d) (E[(theta.s)^2] = |s|^2 / d).
    """
    if a.ndim < 1 or b.ndim < 1 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"point clouds must share their per-point shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a) < 1 or len(b) < 1 or n_proj < 1:
        raise ValueError("need non-empty point clouds and n_proj >= 1")
    a = a.detach().double().cpu().reshape(len(a), -1)
    b = b.detach().double().cpu().reshape(len(b), -1)
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("point clouds contain NaN or inf")
    theta = torch.randn(a.shape[1], n_proj, dtype=torch.float64, generator=generator)
    theta = theta / theta.norm(dim=0, keepdim=True)  # [d, P] unit directions
    n = max(len(a), len(b))
    qa = _quantiles((a @ theta).sort(0).values, n)  # [n, P]
    qb = _quantiles((b @ theta).sort(0).values, n)
    return float((qa - qb).pow(2).mean().sqrt())
