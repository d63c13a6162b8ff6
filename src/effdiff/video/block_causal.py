"""Block-causal streaming generation with a KV cache (Block Diffusion, Arriola et al. 2025,
"Block Diffusion: Interpolating Between Autoregressive and Diffusion Language Models", in video:
frame blocks).

A clip is cut into blocks of ``block_frames`` frames. Block b is denoised by any effdiff solver
while its tokens attend to themselves and to the *clean* frames of the ``window_blocks`` blocks
before it; when it is finished, one more forward pass at σ = 0 computes its keys/values, which are
stored in the cache and read (never recomputed) by the later blocks. Frames stream out a block at
a time; with a bounded window the cost per block is constant, so the total grows linearly.

Training sees the same conditionals at once: ``bd_mask`` over the sequence ``[x_t | x_0]`` (2T
frames) lets noisy block b attend to noisy block b and clean blocks b-W..b-1, and clean block b
attend to clean blocks b-W..b — the mask under which ``VideoDiT.block_diffusion`` equals
``stream_step`` on a cache built by ``commit`` (tests/test_video_model.py checks it in float64).
"""
from __future__ import annotations

import torch

Tensor = torch.Tensor


def context_label(process, t: float = 0.0) -> float:
    """The noise label of context blocks committed at flow time ``t`` (0: clean), as training labels them."""
    return float(process.c_noise(torch.tensor(float(t), dtype=torch.float64)))


def bd_mask(frames: int, block_frames: int, window_blocks: int = 0, device=None) -> Tensor:
    """Frame-level mask [2T, 2T] (True: attend) of Block Diffusion's training sequence [x_t | x_0]."""
    b = torch.arange(frames, device=device) // block_frames
    qi, kj = b[:, None], b[None, :]
    near = (kj >= qi - window_blocks) if window_blocks > 0 else torch.ones_like(qi == kj)
    noisy_noisy = qi == kj
    noisy_clean = (kj < qi) & near
    clean_clean = (kj <= qi) & near
    none = torch.zeros_like(noisy_noisy)
    return torch.cat([torch.cat([noisy_noisy, noisy_clean], 1), torch.cat([none, clean_clean], 1)], 0)


class Past(tuple):
    """One layer's visible cached frames ``(k, v, frames)`` (k, v [B, H, N, d]), as a block reads them in every
    solver step. ``join`` puts the block's own keys after them. Without autograd it writes them into one buffer
    per block shape, whose cached part is copied once: a step copies only its own keys, not the whole context."""

    def __new__(cls, k: Tensor, v: Tensor, frames: Tensor):
        self = super().__new__(cls, (k, v, frames))
        self.buffers: dict = {}
        return self

    def join(self, k: Tensor, v: Tensor, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(cat(past k, k), cat(past v, v), cat(past frames, frames))``; the keys are a reused buffer (valid
        until the next ``join`` of this shape) unless gradients flow through them."""
        pk, pv, pf = self
        kf = torch.cat([pf, frames])
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad or pk.requires_grad):
            return torch.cat([pk, k], 2), torch.cat([pv, v], 2), kf
        key = (k.shape, k.dtype, v.shape, v.dtype)
        if key not in self.buffers:
            self.buffers[key] = (torch.cat([pk, k], 2), torch.cat([pv, v], 2))
            return (*self.buffers[key], kf)
        bk, bv = self.buffers[key]
        n = pk.shape[2]
        bk[:, :, n:] = k
        bv[:, :, n:] = v
        return bk, bv, kf


class KVCache:
    """Per-layer keys/values [B, H, N, d] of committed clean frames and their frame indices."""

    def __init__(self, depth: int, block_frames: int, window_blocks: int = 0):
        self.block_frames, self.window_blocks = block_frames, window_blocks
        self.k: list[Tensor | None] = [None] * depth
        self.v: list[Tensor | None] = [None] * depth
        self.frames: Tensor | None = None
        self.writes = 0
        self._memo: dict = {}                 # (start, batch) -> past, until the next append

    def __len__(self) -> int:
        return 0 if self.frames is None else len(self.frames)

    @property
    def rows(self) -> int:
        """The cached batch (0: nothing cached yet)."""
        return 0 if self.k[0] is None else self.k[0].shape[0]

    def keep(self, start: int) -> Tensor | None:
        """Token selector of the cached frames a block starting at frame ``start`` may attend to."""
        if self.frames is None:
            return None
        b = start // self.block_frames
        lo = (b - self.window_blocks) * self.block_frames if self.window_blocks > 0 else -1
        return (self.frames >= lo) & (self.frames < start)

    def past(self, start: int, batch: int | None = None):
        """Per layer (k, v, frames) of the visible cached frames, or None when there are none. ``batch`` a
        multiple r of the cached batch: the cache repeated r times; half of it (a guided stream's paired cache
        ``[cond; null]`` read by its conditional branch alone, e.g. outside a guidance interval): the first half."""
        if (start, batch) not in self._memo:  # every solver step of a block sees the same cached frames
            self._memo[(start, batch)] = self._past(start, batch)
        return self._memo[(start, batch)]

    def _past(self, start: int, batch: int | None):
        sel = self.keep(start)
        if sel is None or not bool(sel.any()):
            return None
        tokens = self.tokens(sel)
        rows = self.k[0].shape[0]
        batch = rows if batch is None else batch
        if batch == rows:
            pick = tokens
        elif batch % rows == 0:             # the cache repeated (a cache of one branch read by both)
            pick = lambda t: tokens(t).repeat(batch // rows, 1, 1, 1)            # noqa: E731
        elif rows % batch == 0 and rows // batch == 2:    # a guided stream's paired cache [cond; null] read by the
            pick = lambda t: tokens(t[:batch])                                   # noqa: E731  conditional branch alone
        else:
            raise ValueError(f"a block of batch {batch} cannot attend to a cache of batch {rows}")
        return [Past(pick(k), pick(v), self.frames[sel]) for k, v in zip(self.k, self.v)]

    def append(self, kvs, frames: Tensor) -> None:
        """Store a committed block's per-layer (k, v) and evict frames no later block can see."""
        for i, (k, v) in enumerate(kvs):
            self.k[i] = k if self.k[i] is None else torch.cat([self.k[i], k], 2)
            self.v[i] = v if self.v[i] is None else torch.cat([self.v[i], v], 2)
        self.frames = frames.clone() if self.frames is None else torch.cat([self.frames, frames])
        self.writes += 1
        self._memo = {}
        nxt = int(frames[-1]) + 1
        if self.window_blocks > 0:
            sel = self.keep(nxt)
            tokens = self.tokens(sel)
            self.k = [tokens(k) for k in self.k]
            self.v = [tokens(v) for v in self.v]
            self.frames = self.frames[sel]

    def tokens(self, sel: Tensor):
        """A function taking the tokens of the selected cached frames ``sel`` [frames] from k or v [B, H, N, d]: a view
        when they are one run of frames (a stream's window always is), a gather otherwise."""
        P = self.k[0].shape[2] // len(self.frames)
        at = sel.nonzero().flatten().tolist()
        if at and at[-1] - at[0] + 1 == len(at):
            return lambda t: t.narrow(2, at[0] * P, len(at) * P)
        tok = sel.repeat_interleave(P)
        return lambda t: t[:, :, tok]
