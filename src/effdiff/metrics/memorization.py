"""Memorization: do samples sit closer to the training images than unseen real images do?

Three numbers, all from Euclidean nearest-neighbour distances in pixel space:

- asymmetry: mean NN distance of the samples to a class-balanced training sample T, divided by
  their mean NN distance to an equal-size held-out sample H. Real images that neither set holds
  score about 1 (the real-data control, reported beside it); a copier of T scores 0.
- copy fraction: share of samples whose nearest training image is much closer than the
  second nearest, d1/d2 < 1/3 over the whole training split (the extraction rule of Yoon et al.
  2023, "Diffusion probabilistic models generalize when they fail to memorize", and Gu et al.
  2023, "On memorization in diffusion models"; in the spirit of Carlini et al. 2023, "Extracting
  training data from diffusion models", who normalise d1 by nearby training distances).
- closer than p5: share of samples whose distance to T is below the 5th percentile of the
  real-data control's distances to T (about 5% for unseen real data).
"""
from __future__ import annotations

import torch

__all__ = ["nn_distances", "copy_ratio", "memorization"]


def _flat(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError(f"{name} must be a tensor [N, ...], got {type(x).__name__}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x.detach().reshape(x.shape[0], -1).double().cpu()


def nn_distances(x: torch.Tensor, ref: torch.Tensor, k: int = 1, chunk: int = 512) -> torch.Tensor:
    """Distances [N, k] from each row of x to its k nearest rows of ref, ascending."""
    a, b = _flat(x, "x"), _flat(ref, "ref")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and ref differ in size per sample: {a.shape[1]} vs {b.shape[1]}")
    if not 1 <= k <= len(b):
        raise ValueError(f"k must be in [1, {len(b)}], got {k}")
    return torch.cat([torch.cdist(c, b).topk(k, dim=1, largest=False).values for c in a.split(chunk)])


def copy_ratio(x: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """d1/d2 [N]: distance to the nearest training image over distance to the second nearest."""
    d = nn_distances(x, train, k=2)
    return d[:, 0] / d[:, 1].clamp_min(1e-12)


def memorization(x: torch.Tensor, train_sample: torch.Tensor, held_out: torch.Tensor, control: torch.Tensor,
                 train_all: torch.Tensor, copy_threshold: float = 1 / 3) -> dict:
    """Memorization scores of samples x, each beside the same score of real `control` images.

    train_sample (T) and held_out (H) are equal-size, class-balanced; control is real data in
    neither (nor in train_all, the whole training split used for the copy rule).
    """
    if len(train_sample) != len(held_out):
        raise ValueError(f"train_sample and held_out must have equal size, got {len(train_sample)} and {len(held_out)}")
    d_t, d_h = nn_distances(x, train_sample)[:, 0], nn_distances(x, held_out)[:, 0]
    c_t, c_h = nn_distances(control, train_sample)[:, 0], nn_distances(control, held_out)[:, 0]
    p5 = torch.quantile(c_t, 0.05)
    return {"mem_asymmetry": float(d_t.mean() / d_h.mean()),
            "mem_asymmetry_real": float(c_t.mean() / c_h.mean()),
            "mem_copy_fraction": float((copy_ratio(x, train_all) < copy_threshold).double().mean()),
            "mem_copy_fraction_real": float((copy_ratio(control, train_all) < copy_threshold).double().mean()),
            "mem_closer_than_p5": float((d_t < p5).double().mean())}
