"""Ring attention (Liu et al. 2023, "Ring Attention with Blockwise Transformers"), in the
sequence-parallel form of xDiT's ring / USP attention: each rank keeps the queries of its own
token slab, and the key/value blocks of all slabs travel once around the ring of ranks
(rank r sends to r+1 and receives from r-1, point to point). While block i is attended to,
block i+1 is already in flight. Each rank folds the blocks in with the online softmax: a block
gives its normalised output and the log-sum-exp of its scores per query, and two partial
results merge exactly by their log-sum-exps (Milakov & Gimelshein 2018; FlashAttention).

The result is exact attention over the whole sequence for any number of heads (Ulysses needs the
heads divisible by the ranks), and no rank ever holds more than two K/V blocks or the scores of
one block. Per call a rank sends R-1 K/V blocks: 2(R-1)·n·D values against Ulysses' 4(R-1)/R·n·D
(equal at R=2, more beyond).

    out, lse = block_attention(q, k, v)          # one block: [..., n, d], [..., n]
    acc = merge(acc, (out, lse))                 # exact online-softmax merge (acc may be None)
"""
from __future__ import annotations

import math

import torch

from .comm import Comm
from .patch_layers import SlabAttention

Tensor = torch.Tensor
Partial = tuple[Tensor, Tensor]      # (softmax(s) @ v normalised within the block [..., n, d], lse [..., n])


def block_attention(q: Tensor, k: Tensor, v: Tensor, scale: float | None = None) -> Partial:
    """Attention of queries q [..., n, d] over one block of keys/values k, v [..., m, d]: the
    block-normalised output [..., n, d] and log-sum-exp of the scaled scores [..., n]."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q @ k.transpose(-2, -1)).mul_(scale)                              # [..., n, m]
    m = s.amax(-1, keepdim=True)                                           # this block's max per query
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))             # an all -inf row: p = 0, lse = -inf
    p = torch.exp(s - m)
    l = p.sum(-1, keepdim=True)
    out = (p @ v).div_(l.clamp_min(torch.finfo(l.dtype).tiny))
    return out, (m + torch.log(l)).squeeze(-1)


def merge(acc: Partial | None, new: Partial) -> Partial:
    """Exact merge of two partial attentions over disjoint key blocks by their log-sum-exps a, b:
    lse = log(e^a + e^b), out = w·out_a + (1 - w)·out_b with w = e^a / (e^a + e^b) = sigmoid(a - b).
    A side whose lse is -inf (nothing attended) gets weight 0; both -inf stays 0."""
    if acc is None:
        return new
    (oa, a), (ob, b) = acc, new
    w = torch.nan_to_num(torch.sigmoid(a - b), nan=0.0)                    # NaN only for -inf - -inf
    return torch.lerp(ob, oa, w[..., None]), torch.logaddexp(a, b)


def ring_pass(comm: Comm, t: Tensor) -> tuple[Tensor, list]:
    """Start sending ``t`` to the next rank and receiving the previous rank's block of the same shape;
    returns (receive buffer, works to wait on). Counted in ``comm.bytes_sent`` as one send of ``t``."""
    return comm.sendrecv(t, (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size)


def ring_attention(q: Tensor, k: Tensor, v: Tensor, comm: Comm) -> Tensor:
    """Exact attention of this rank's queries q [B, H, n, d] over every rank's k, v [B, H, n, d],
    the K/V blocks passed around the ring (the next transfer overlaps this block's attention)."""
    kv, acc = torch.stack([k, v]).contiguous(), None                       # [2, B, H, n, d]
    for i in range(comm.size):
        pending = ring_pass(comm, kv) if i < comm.size - 1 else None
        acc = merge(acc, block_attention(q, kv[0], kv[1]))
        if pending is not None:
            buf, works = pending
            for w in works:
                w.wait()
            kv = buf                                                       # the block of rank r - i - 1
    return acc[0]


class RingAttention(SlabAttention):
    """Self-attention of this slab's tokens over all slabs by ring attention (exact, any head count)."""

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        out = ring_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), self.rt.comm)  # [B, H, n, d]
        return out.transpose(1, 2)
