"""Collectives with a byte count: what a parallel method sends per step is part of its cost.

``bytes_sent`` counts the payload this rank sends if every collective were direct messages:
all_gather of t sends t to each of the other R-1 ranks; all_to_all sends the R-1 chunks meant
for others; send / broadcast send the tensor once per receiver; all_reduce counts a ring's
2 (R-1)/R of the tensor. The counts are the same on every rank (slabs are equal).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

Tensor = torch.Tensor


@dataclass
class Comm:
    """A process group (default: the world) and this rank's sent-byte counter."""
    group: object = None
    bytes_sent: int = 0
    calls: int = 0

    @property
    def rank(self) -> int:
        return dist.get_rank(self.group) if dist.is_initialized() else 0

    @property
    def size(self) -> int:
        return dist.get_world_size(self.group) if dist.is_initialized() else 1

    def _count(self, nbytes: float) -> None:
        self.bytes_sent += int(nbytes)
        self.calls += 1

    def all_gather(self, t: Tensor, async_op: bool = False):
        """[t_0, ..., t_{R-1}] (every rank's t, same shape); with async_op (work, list)."""
        t = t.contiguous()
        out = [torch.empty_like(t) for _ in range(self.size)]
        self._count(t.numel() * t.element_size() * (self.size - 1))
        work = dist.all_gather(out, t, group=self.group, async_op=async_op)
        return (work, out) if async_op else out

    def all_reduce(self, t: Tensor) -> Tensor:
        """Sum over ranks, in place."""
        self._count(2 * (self.size - 1) / self.size * t.numel() * t.element_size())
        dist.all_reduce(t, group=self.group)
        return t

    def all_to_all(self, t: Tensor) -> Tensor:
        """Chunk j of ``t`` (split along dim 0 into R) goes to rank j; returns the chunks received."""
        t = t.contiguous()
        out = torch.empty_like(t)
        self._count(t.numel() * t.element_size() * (self.size - 1) / self.size)
        dist.all_to_all_single(out, t, group=self.group)
        return out

    def broadcast(self, t: Tensor, src: int) -> Tensor:
        """``t`` (contiguous, received in place) from rank ``src``."""
        if not t.is_contiguous():
            raise ValueError("broadcast needs a contiguous tensor")
        if self.rank == src:
            self._count(t.numel() * t.element_size() * (self.size - 1))
        dist.broadcast(t, src=dist.get_global_rank(self.group, src) if self.group else src, group=self.group)
        return t

    def sendrecv(self, t: Tensor, dst: int, src: int):
        """Send ``t`` to rank ``dst`` and receive a tensor like it from rank ``src`` (ranks of this
        group) as one batch, which NCCL cannot deadlock on; returns (receive buffer, works to wait on)."""
        t = t.contiguous()
        buf = torch.empty_like(t)
        glob = (lambda r: dist.get_global_rank(self.group, r)) if self.group is not None else (lambda r: r)
        self._count(t.numel() * t.element_size())
        return buf, dist.batch_isend_irecv([dist.P2POp(dist.isend, t, glob(dst), self.group),
                                            dist.P2POp(dist.irecv, buf, glob(src), self.group)])

    def isend(self, t: Tensor, dst: int):
        self._count(t.numel() * t.element_size())
        return dist.isend(t.contiguous(), dst=dst, group=self.group)

    def recv(self, like: Tensor, src: int) -> Tensor:
        out = torch.empty(like.shape, dtype=like.dtype, device=like.device)
        dist.recv(out, src=src, group=self.group)
        return out


class Exchange:
    """All-gather with a stale mode (DistriFusion's displaced parallelism): ``gather(key, t, stale)``
    returns every rank's ``t`` for this call, or with ``stale`` the other ranks' ``t`` from the
    previous call under ``key`` (own entry fresh) while this call's gather runs asynchronously
    for the next one. Falls back to a synchronous gather when nothing of the same shape is held."""

    def __init__(self, comm: Comm):
        self.comm, self.held = comm, {}

    def gather(self, key, t: Tensor, stale: bool = False) -> list[Tensor]:
        prev = self.held.get(key)
        if stale and prev is not None and prev[1][0].shape == t.shape and prev[1][0].dtype == t.dtype:
            work, old = prev
            if work is not None:
                work.wait()
            self.held[key] = self.comm.all_gather(t, async_op=True)
            old = list(old)
            old[self.comm.rank] = t
            return old
        out = self.comm.all_gather(t)
        self.held[key] = (None, out)
        return out

    def reset(self) -> None:
        """Finish outstanding gathers and forget everything held (a new generation)."""
        for work, _ in self.held.values():
            if work is not None:
                work.wait()
        self.held = {}
