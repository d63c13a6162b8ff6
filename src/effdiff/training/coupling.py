"""Noise-to-data couplings within a minibatch: which of the batch's noise vectors each image gets.

Both options solve one linear assignment (scipy's ``linear_sum_assignment``, Hungarian /
Jonker-Volgenant) over the batch and permute the *noise*, so every image keeps its own label:
conditions travel with their image, and the multiset of noise vectors (hence the noise
marginal) is unchanged. Deterministic: no random draw is added, resume stays exact.

- ``"ot"``: minibatch optimal-transport coupling on the squared L2 cost, the OT-CFM of Tong et
  al. 2023 ("Improving and Generalizing Flow-Based Generative Models with Minibatch Optimal
  Transport"); with equal, uniform marginals the exact OT plan is a permutation. Meant for flow
  matching (straighter paths), valid for any process.
- ``"immiscible"``: Immiscible Diffusion (Li et al. 2024): the same assignment on the L2
  distance (not squared), as in the paper's code, for any diffusion process.

At batch 1 both are the identity (nothing to assign).
"""
from __future__ import annotations

import torch

COUPLINGS = ("none", "ot", "immiscible")


def cost_matrix(x: torch.Tensor, eps: torch.Tensor, kind: str) -> torch.Tensor:
    """[B, B] float64 cost of giving noise j to image i."""
    a, b = x.reshape(x.shape[0], -1).double(), eps.reshape(eps.shape[0], -1).double()
    d = torch.cdist(a, b)
    return d * d if kind == "ot" else d


def assignment(x: torch.Tensor, eps: torch.Tensor, kind: str) -> torch.Tensor:
    """The permutation ``perm`` [B] (int64) minimising Σ_i cost(x_i, eps_perm[i])."""
    if kind not in COUPLINGS:
        raise ValueError(f"unknown coupling {kind!r}; known: {', '.join(COUPLINGS)}")
    n = x.shape[0]
    if kind == "none" or n == 1:
        return torch.arange(n)
    if eps.shape != x.shape:
        raise ValueError(f"noise {tuple(eps.shape)} and data {tuple(x.shape)} must have the same shape")
    from scipy.optimize import linear_sum_assignment
    rows, cols = linear_sum_assignment(cost_matrix(x, eps, kind).cpu().numpy())
    perm = torch.empty(n, dtype=torch.long)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols, dtype=torch.long)
    return perm


def couple(x: torch.Tensor, eps: torch.Tensor, kind: str) -> torch.Tensor:
    """``eps`` reordered so that image i gets noise ``eps[perm[i]]`` (a permutation of the rows)."""
    if kind == "none":
        return eps
    return eps[assignment(x, eps, kind).to(eps.device)]
