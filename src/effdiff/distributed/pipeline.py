"""PipeFusion (Fang et al. 2024, xDiT) for the DiT: the transformer blocks split into one stage
per rank; the token sequence split into ``num_patches`` patches that flow through the stages one
after another (stage r works on patch m while stage r+1 works on patch m-1). A patch's attention
needs every token's keys and values at that block: each block keeps the full-sequence K/V of its
last evaluation and refreshes only the rows of the patch it computes, so the patches not yet
computed in this step are stale by one step (PipeFusion's displaced KV).

Warm-up steps (and ``mode="sync"``) send the whole sequence as one patch: exact. The last stage
broadcasts the final tokens so every rank holds the same output.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..models.dit import DiT
from ..models.layers import SelfAttention
from .comm import Comm
from .net import ParallelNet, shared_copy, with_net
from .patch_layers import split_heads

Tensor = torch.Tensor


@dataclass
class PipeConfig:
    """mode "sync" (one patch, exact) or "stale" (``num_patches`` pipelined after ``warmup`` steps)."""
    num_patches: int = 2
    warmup: int = 1
    mode: str = "stale"

    def __post_init__(self):
        if self.mode not in ("sync", "stale"):
            raise ValueError(f"mode must be 'sync' or 'stale', got {self.mode!r}")
        for name in ("num_patches", "warmup"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "num_patches" else 0):
                raise ValueError(f"{name} must be a {'positive' if name == 'num_patches' else 'non-negative'} "
                                 f"integer, got {v!r}")


class KVAttention(nn.Module):
    """Self-attention of a patch over the block's full-sequence K/V cache (rows of ``span`` fresh)."""

    def __init__(self, attn: SelfAttention):
        super().__init__()
        self.attn, self.span, self.kv = attn, None, None

    def forward(self, x: Tensor) -> Tensor:
        B, n, D = x.shape
        q, k, v = split_heads(self.attn, x)                              # [B, n, H, d]
        kv = torch.stack([k, v])                                    # [2, B, n, H, d]
        if self.span is None:
            self.kv = kv
        else:
            lo, hi = self.span
            self.kv = self.kv.clone()
            self.kv[:, :, lo:hi] = kv
        full = self.kv.transpose(2, 3)                               # [2, B, H, N, d]
        out = F.scaled_dot_product_attention(q.transpose(1, 2), full[0], full[1])
        return self.attn.proj(out.transpose(1, 2).reshape(B, n, D))


class Stages(nn.Module):
    """Replaces ``DiT.blocks`` (as a one-element list): this rank's blocks, fed by the previous stage."""

    def __init__(self, blocks: nn.ModuleList, comm: Comm, config: PipeConfig):
        super().__init__()
        R, L = comm.size, len(blocks)
        if L < R:
            raise ValueError(f"{L} blocks cannot fill {R} pipeline stages")
        bounds = [round(L * i / R) for i in range(R + 1)]
        self.mine = nn.ModuleList(blocks[bounds[comm.rank]:bounds[comm.rank + 1]])
        self.attns = []
        for blk in self.mine:
            blk.attn = KVAttention(blk.attn)
            self.attns.append(blk.attn)
        self.comm, self.config = comm, config
        self.stale, self.shape = False, None

    def spans(self, N: int, h: Tensor) -> list[tuple[int, int]]:
        """Token spans of this evaluation: the whole sequence unless stale K/V of this shape exist."""
        M = self.config.num_patches if self.stale and self.shape == h.shape else 1
        if M > N:
            raise ValueError(f"{M} patches of a {N}-token sequence")
        b = [round(N * i / M) for i in range(M + 1)]
        return [(b[i], b[i + 1]) for i in range(M)]

    def forward(self, h: Tensor, c: Tensor, context: Tensor | None = None) -> Tensor:
        comm, r, R = self.comm, self.comm.rank, self.comm.size
        spans = self.spans(h.shape[1], h)
        outs, sends = [], []
        for lo, hi in spans:
            for a in self.attns:
                a.span = None if len(spans) == 1 else (lo, hi)
            x = h[:, lo:hi] if r == 0 else comm.recv(h[:, lo:hi], src=r - 1)
            for blk in self.mine:
                x = blk(x, c, context)
            if r < R - 1:
                sends.append((comm.isend(x, r + 1), x))
            else:
                outs.append(x)
        for work, _ in sends:
            work.wait()
        self.shape = h.shape
        out = torch.cat(outs, dim=1) if r == R - 1 else h.new_empty(h.shape)   # contiguous
        return comm.broadcast(out, src=R - 1)


class PipeNet(ParallelNet):
    """The DiT run as a PipeFusion pipeline; same signature and output on every rank."""

    def __init__(self, net: nn.Module, config: PipeConfig, comm: Comm):
        if not isinstance(net, DiT):
            raise TypeError(f"PipeFusion splits a DiT's blocks, not a {type(net).__name__}")
        inner = shared_copy(net)
        stages = Stages(inner.blocks, comm, config)
        inner.blocks = nn.ModuleList([stages])
        super().__init__(inner, config.mode == "stale", config.warmup)
        self.stages_ = stages

    def reset(self) -> None:
        self.stages_.shape = None

    def begin(self, stale: bool) -> None:
        self.stages_.stale = stale


def pipefusion(denoiser, config: PipeConfig | None = None, comm: Comm | None = None, **fields):
    """``denoiser`` with its DiT run as a PipeFusion pipeline over the ranks of ``comm``."""
    config = config or PipeConfig(**fields)
    return with_net(denoiser, PipeNet(denoiser.net, config, comm or Comm()))
