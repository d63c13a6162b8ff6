"""Sparse attention for the video DiT as registered techniques: key frames chosen per query frame (a frame's P tokens
form one block). ``sliding-tile``'s pattern is the same for every sample and head, so it runs as one fused attention
call per query frame over its key frames (a view of the keys when they are contiguous, ``frame_attention``); patterns
that differ per sample and head (``adaspa``), and pooled far frames, run as gathered block-sparse attention.

* ``sliding-tile`` — Sliding Tile Attention (Zhang et al. 2025, "Fast Video Generation with Sliding
  Tile Attention"): a fixed 3-D window of tiles; our frames are only 4x4 tokens, so a tile is a
  whole frame and the window is ``window`` frames either side in time.
* ``adaspa`` — AdaSpa (Xia et al. 2025, "Training-free and Adaptive Sparse Attention for Efficient
  Long Video Generation"): a blockified pattern searched online — at the sampling step
  ``search_step`` of each generation the exact attention map is computed, summed per (query frame,
  key frame) block, and each query frame keeps its ``density`` share of key frames with the most
  mass, per head and per sample; the later steps of that generation reuse the pattern (AdaSpa's
  observation: the pattern is stable across denoising steps). Streaming blocks search their own.
  ``local`` >= 0 always keeps the key frames within ``local`` frames of the query frame, inside the
  ``density`` budget when it fits; ``min_frames`` keeps at least that many key frames (a stream's first
  blocks have few, and a share of few is one or two).

* ``sparse-videogen`` — Sparse VideoGen (Xi et al. 2025, "Sparse VideoGen: Accelerating Video Diffusion
  Transformers with Spatial-Temporal Sparsity"): each head is a spatial head (the key frames within ``window``
  frames) or a temporal head (every allowed key frame, only the query's token position +- ``radius``), whichever
  reproduces the exact attention output better on a few sampled queries at the profile step; reused after.

``sliding-tile`` and ``adaspa`` take ``sink``: the first ``sink`` key frames each query frame may see (by frame index) are always
kept — attention sinks (StreamingLLM, Xiao et al. 2024, "Efficient Streaming Language Models with
Attention Sinks"). In a streamed call they are the oldest cached frames of the block's window, the
context every training window starts with; ``sink=0`` (default) is the plain pattern. Sliding-tile's
``ahead`` >= 0 makes the window one-sided: ``window`` frames back, ``ahead`` forward (0: causal in time, as
sliding-window attention in language models): more of the past, whose motion a block continues, for the same MACs;
``stride`` adds the key frames at multiples of ``stride`` frames from the query frame (the strided pattern
of Sparse Transformers, Child et al. 2019): the whole window seen, thinned. Sliding-tile's ``far_tokens`` keeps
every other allowed key frame in view at a fraction of its cost: mean-pooled to ``far_tokens`` tokens, each logit
raised by the log of the tokens it stands for (Native Sparse Attention's compressed branch, Yuan et al. 2025; ToMe's
proportional attention, Bolya et al. 2023), exact where a frame's tokens are equal; its ``dense_heads`` attend densely
in every layer while the other heads keep the window (DuoAttention's retrieval and streaming heads, Xiao et al. 2024,
"DuoAttention: Efficient Long-Context LLM Inference with Retrieval and Streaming Heads"). ``dense_layers``
keeps whole layers dense, in training as in sampling (local layers interleaved with global ones: Longformer,
Beltagy et al. 2020; Gemma 2, 2024), so every token still reaches the whole window once per pass. ``dense_steps``
runs the first sampling steps (high noise, where layout and motion are set) densely; sliding-tile's
``dense_commit`` keeps streaming's KV-cache writes exact (AdaSpa's commit pass already runs dense: it
is outside the sampling loop, so it searches).

At full density (window) each equals dense attention (tests/test_video_sparse.py). ``register()`` adds them to
``effdiff.techniques`` (family ``attention``). Each counts the q k^T and
p v multiply-accumulates it performs in ``attention.MACS`` and in its handle's ``stats``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..context import current_context
from ..hooks import Handle
from ..hooks.stats import Stats
from .attention import MACS, AttentionCall, VideoAttention, dense_attention, dense_macs, token_mask

Tensor = torch.Tensor


@dataclass
class AttentionStats(Stats):
    """Attention work: MACs performed (``profile_macs`` of them spent classifying heads), MACs dense attention
    would have performed, searches run."""
    macs: int = 0
    profile_macs: int = 0
    dense_macs: int = 0
    searches: int = 0
    calls: int = 0


def frame_mask(call: AttentionCall) -> Tensor:
    """[Fq, Fk] bool: the call's mask or all True."""
    if call.mask is not None:
        return call.mask
    return torch.ones(len(call.q_frames), len(call.k_frames), dtype=torch.bool, device=call.q_frames.device)


def block_sparse(q: Tensor, k: Tensor, v: Tensor, idx: Tensor, valid: Tensor, P: int,
                 far: Tensor | None = None, far_tokens: int = 0) -> Tensor:
    """Attention of each query frame to its K key frames ``idx`` [B, H, Fq, K] (``valid`` same shape):
    q [B, H, Fq*P, d], k/v [B, H, Fk*P, d] -> [B, H, Fq*P, d]. ``far`` [Fq, Fk] bool: key frames each query frame
    also sees, each as ``far_tokens`` mean-pooled tokens (``pool_frames``) whose logits count the P / far_tokens
    tokens each stands for (+ log of it: ToMe's proportional attention), in the same softmax."""
    B, H, Nq, d = q.shape
    Fq, K = idx.shape[2], idx.shape[3]
    kb, vb = (t.reshape(B, H, -1, P, d) for t in (k, v))
    bi = torch.arange(B, device=q.device)[:, None, None, None]
    hi = torch.arange(H, device=q.device)[None, :, None, None]
    ks = kb[bi, hi, idx].reshape(B, H, Fq, K * P, d)                     # [B, H, Fq, K*P, d]
    vs = vb[bi, hi, idx].reshape(B, H, Fq, K * P, d)
    qf = q.reshape(B, H, Fq, P, d)
    s = qf @ ks.transpose(-1, -2) / math.sqrt(d)                         # [B, H, Fq, P, K*P]
    s = s.masked_fill(~valid.repeat_interleave(P, -1)[:, :, :, None, :], float("-inf"))
    MACS.add(2 * B * H * Fq * P * K * P * d)
    Kf = int(far.sum(1).max()) if far is not None and far_tokens > 0 else 0      # pooled frames gathered per row
    if not Kf:
        return (s.softmax(-1) @ vs).reshape(B, H, Nq, d)
    fidx, fvalid = pick(far, torch.zeros(far.shape, dtype=torch.float64, device=far.device), Kf)   # [Fq, Kf]
    kp, vp = (pool_frames(t, P, far_tokens).reshape(B, H, -1, far_tokens, d)[:, :, fidx]
              .reshape(B, H, Fq, Kf * far_tokens, d) for t in (k, v))                # [B, H, Fq, Kf*m, d]
    sf = qf @ kp.transpose(-1, -2) / math.sqrt(d) + math.log(P / far_tokens)            # [B, H, Fq, P, Kf*m]
    sf = sf.masked_fill(~fvalid.repeat_interleave(far_tokens, -1)[None, None, :, None, :], float("-inf"))
    MACS.add(2 * B * H * Fq * P * Kf * far_tokens * d)
    p = torch.cat([s, sf], -1).softmax(-1)
    out = p[..., :K * P] @ vs + p[..., K * P:] @ vp
    return out.reshape(B, H, Nq, d)


def frame_attention(q: Tensor, k: Tensor, v: Tensor, keep: Tensor, P: int, out: Tensor | None = None) -> Tensor:
    """Each query frame's exact attention to its kept key frames ``keep`` [Fq, Fk] (one pattern for every sample and
    head): one fused SDPA call per query frame, over a view of the keys when its frames are contiguous (a sliding
    window) and over gathered tokens otherwise. q [B, H, Fq*P, d], k/v [B, H, Fk*P, d] -> [B, H, Fq*P, d], written
    into ``out`` when given (e.g. its heads' slice of the layer's output); a query frame with no key frame gets zeros.
    Counts exactly the kept pairs' MACs. (On the bench CPU one call over a block's 5-D strided windows is 2.5x slower
    and one over windows copied out no faster: docs/bench/video/stream-wall-defaults/micro.py.)"""
    B, H, Nq, d = q.shape
    out = torch.empty_like(q) if out is None else out
    for i, row in enumerate(keep.tolist()):                           # one conversion, then plain Python per row
        cols = [j for j, kept in enumerate(row) if kept]
        if not cols:
            out[:, :, i * P:(i + 1) * P] = 0
            continue
        lo, hi = cols[0], cols[-1] + 1
        if hi - lo == len(cols):
            ks, vs = k[:, :, lo * P:hi * P], v[:, :, lo * P:hi * P]
        else:
            tok = (torch.tensor(cols, device=q.device)[:, None] * P + torch.arange(P, device=q.device)).flatten()
            ks, vs = k[:, :, tok], v[:, :, tok]
        out[:, :, i * P:(i + 1) * P] = F.scaled_dot_product_attention(q[:, :, i * P:(i + 1) * P], ks, vs)
    MACS.add(2 * B * H * int(keep.sum()) * P * P * d)
    return out


def pool_frames(x: Tensor, P: int, m: int) -> Tensor:
    """Each frame's P tokens (a square grid) mean-pooled to m (a square grid too): x [B, H, F*P, d] ->
    [B, H, F*m, d]. All tokens of a frame share its RoPE angle, so pooling rotated keys equals rotating the pooled key."""
    g, s = math.isqrt(P), math.isqrt(m)
    if g * g != P or s * s != m or g % s:
        raise ValueError(f"far_tokens pools a square grid of {P} tokens per frame to a square grid dividing it; got {m}")
    B, H, N, d = x.shape
    x = x.reshape(B, H, N // P, s, g // s, s, g // s, d).mean((4, 6))
    return x.reshape(B, H, (N // P) * m, d)


def counted(stats: AttentionStats, kernel, *args) -> Tensor:
    """``kernel(*args)``, adding the attention MACs it counts in ``MACS`` to ``stats.macs``: each kernel counts its
    own work once, and a processor's stats read it."""
    before = MACS.macs
    out = kernel(*args)
    stats.add(macs=MACS.macs - before)
    return out


def sink_mask(call: AttentionCall, sink: int) -> Tensor:
    """[Fq, Fk] bool: per query frame, its first ``sink`` allowed key frames by frame index (ties: by position)."""
    allowed = frame_mask(call)
    if sink <= 0:
        return torch.zeros_like(allowed)
    order = torch.sort(call.k_frames, stable=True).indices
    first = allowed[:, order] & (allowed[:, order].cumsum(1) <= sink)
    return torch.zeros_like(allowed).index_copy(1, order, first)


def dense_now(config, call: AttentionCall) -> bool:
    """Whether this call attends densely: a layer in ``config.dense_layers``, a sampling step before
    ``config.dense_steps``, or (``config.dense_commit``) a call outside any sampling loop — streaming's commit pass
    that writes the KV cache, and training."""
    if call.layer in config.dense_layers:
        return True
    ctx = current_context()
    return getattr(config, "dense_commit", False) if ctx is None else ctx.step < config.dense_steps


def pick(keep: Tensor, score: Tensor, K: int) -> tuple[Tensor, Tensor]:
    """The K key frames of highest ``score`` per row, ``keep`` ones first -> (idx, idx's ``keep`` entries)."""
    idx = (score.double() + keep.double() * 1e6).topk(K, dim=-1).indices
    return idx, keep.gather(-1, idx)


def window_keep(call: AttentionCall, window: int, sink: int = 0, stride: int = 0, ahead: int = -1) -> Tensor:
    """[Fq, Fk] bool: the allowed key frames from ``window`` frames before the query frame to ``ahead`` frames after
    it (-1: ``window``), at multiples of ``stride`` (0: none) and the first ``sink``."""
    back = call.q_frames[:, None] - call.k_frames[None, :]               # [Fq, Fk]: > 0 for earlier key frames
    dist = back.abs()
    inside = (back <= window) & (-back <= (window if ahead < 0 else ahead))
    strided = dist % stride == 0 if stride > 0 else torch.zeros_like(dist, dtype=torch.bool)
    return frame_mask(call) & (inside | strided | sink_mask(call, sink))


def window_pattern(call: AttentionCall, window: int, sink: int = 0, stride: int = 0,
                   ahead: int = -1) -> tuple[Tensor, Tensor]:
    """Sliding-tile key frames per query frame (``window_keep``) as (idx, valid) [Fq, K], nearest first."""
    return nearest_first(call, window_keep(call, window, sink, stride, ahead))


def nearest_first(call: AttentionCall, keep: Tensor) -> tuple[Tensor, Tensor]:
    """The kept key frames [Fq, Fk] of each query frame as (idx, valid) [Fq, K], nearest first (ties: earliest)."""
    dist = (call.q_frames[:, None] - call.k_frames[None, :]).abs()
    K = max(1, int(keep.sum(1).max()))
    near = -(dist.double() + torch.arange(len(call.k_frames), device=dist.device) * 1e-6)   # ties: earliest
    return pick(keep, near, K)


@dataclass
class SlidingTileConfig:
    window: int = 2              # key frames within this many frames of the query frame (in time; after it: ``ahead``)
    sink: int = 0                # the first key frames (by frame index) every query frame keeps
    stride: int = 0              # also key frames whose offset from the query frame is a multiple of this (0: none)
    ahead: int = -1              # key frames up to this many frames after the query frame (-1: ``window``, symmetric)
    dense_steps: int = 0         # the first sampling steps of each generation attend densely
    dense_layers: tuple[int, ...] = ()   # these layers (block indices) always attend densely: local and global
                                         # layers interleaved (Longformer, Gemma 2)
    dense_commit: bool = False   # streaming's commit pass (outside any sampling loop) attends densely
    far_tokens: int = 0          # the allowed key frames outside the window are still seen, each as this many
                                 # mean-pooled tokens (NSA's compressed branch, Yuan et al. 2025; 0: dropped)
    dense_heads: tuple[int, ...] = ()    # these heads attend densely in every layer, the others to the pattern
                                         # (DuoAttention's retrieval and streaming heads, Xiao et al. 2024)


@dataclass
class AdaSpaConfig:
    density: float = 0.25        # share of key frames each query frame keeps
    search_step: int = 0         # sampling step whose exact attention map picks the pattern
    sink: int = 0                # the first key frames (by frame index) every query frame keeps
    local: int = -1              # key frames within this many frames of the query frame always kept (-1: none)
    min_frames: int = 0          # keep at least this many key frames (a short context, e.g. a stream's first block)
    dense_steps: int = 0         # the first sampling steps of each generation attend densely
    dense_layers: tuple[int, ...] = ()   # these layers (block indices) always attend densely: local and global
                                         # layers interleaved (Longformer, Gemma 2)


class SlidingTile:
    """Processor: each query frame attends to the key frames within ``window`` frames of it."""

    def __init__(self, config: SlidingTileConfig, stats: AttentionStats):
        if config.far_tokens < 0 or any(h < 0 for h in config.dense_heads):
            raise ValueError(f"sliding-tile needs far_tokens >= 0 and head indices >= 0, got {config}")
        self.config, self.stats, self.patterns = config, stats, {}

    def __call__(self, q, k, v, call: AttentionCall) -> Tensor:
        c, H = self.config, q.shape[1]
        self.stats.add(dense_macs=dense_macs(q, call), calls=1)
        if dense_now(c, call):
            return counted(self.stats, dense_attention, q, k, v, call)
        if any(h >= H for h in c.dense_heads):
            raise ValueError(f"sliding-tile dense_heads {c.dense_heads}: this layer has {H} heads")
        keep = self.keep(call)
        runs = head_runs(H, c.dense_heads)
        if len(runs) == 1:
            return self.heads(q, k, v, call, keep, runs[0][2])
        out = torch.empty_like(q)
        for a, b, dense in runs:                                      # head slices are views; each run writes its own
            self.heads(q[:, a:b], k[:, a:b], v[:, a:b], call, keep, dense, out[:, a:b])
        return out

    def keep(self, call: AttentionCall) -> Tensor:
        """``window_keep`` of this processor's window, kept per (query frames, key frames) while no mask is set: every
        step and layer of a streamed block asks for the same pattern."""
        c = self.config
        if call.mask is not None:
            return window_keep(call, c.window, c.sink, c.stride, c.ahead)
        key = (tuple(call.q_frames.tolist()), tuple(call.k_frames.tolist()))
        if key not in self.patterns:
            if len(self.patterns) > 256:
                self.patterns.clear()
            self.patterns[key] = window_keep(call, c.window, c.sink, c.stride, c.ahead)
        return self.patterns[key]

    def heads(self, q, k, v, call: AttentionCall, keep: Tensor, dense: bool, out: Tensor | None = None) -> Tensor:
        """A run of heads: dense (DuoAttention's retrieval heads) or the window (+ pooled far frames), written into
        ``out`` when given."""
        c, (B, n), P = self.config, q.shape[:2], call.tokens
        if c.far_tokens <= 0 and not dense:                               # the window alone: fused, per query frame
            return counted(self.stats, frame_attention, q, k, v, keep, P, out)
        if dense:
            got = counted(self.stats, dense_attention, q, k, v, call)
        else:
            idx, valid = nearest_first(call, keep)                         # [Fq, K]
            got = counted(self.stats, block_sparse, q, k, v, idx.expand(B, n, -1, -1), valid.expand(B, n, -1, -1), P,
                          frame_mask(call) & ~keep, c.far_tokens)
        return got if out is None else out.copy_(got)


def head_runs(H: int, dense_heads) -> list[tuple[int, int, bool]]:
    """Heads 0..H-1 as maximal runs (start, stop, dense) of ``dense_heads`` membership."""
    runs: list[tuple[int, int, bool]] = []
    for h in range(H):
        dense = h in dense_heads
        if runs and runs[-1][2] == dense:
            runs[-1] = (runs[-1][0], h + 1, dense)
        else:
            runs.append((h, h + 1, dense))
    return runs


class AdaSpa:
    """Processor: online search of a blockified pattern at one step, reused at the others."""

    def __init__(self, config: AdaSpaConfig, stats: AttentionStats):
        self.config, self.stats, self.patterns = config, stats, {}

    def key(self, call: AttentionCall):
        ctx = current_context()
        gen = ctx.generation if ctx is not None else 0
        return gen, call.layer, int(call.q_frames[0]), len(call.q_frames), len(call.k_frames)

    def forced(self, call: AttentionCall) -> Tensor:
        """[Fq, Fk] key frames kept whatever the attention map says: the sink and the ``local`` neighbours."""
        dist = (call.q_frames[:, None] - call.k_frames[None, :]).abs()
        near = dist <= self.config.local if self.config.local >= 0 else torch.zeros_like(dist, dtype=torch.bool)
        return frame_mask(call) & (near | sink_mask(call, self.config.sink))

    def search(self, q, k, call: AttentionCall) -> tuple[Tensor, Tensor]:
        """Exact block attention mass [B, H, Fq, Fk] -> the top ``density`` key frames per query frame."""
        B, H, Nq, d = q.shape
        P, Fq, Fk = call.tokens, len(call.q_frames), len(call.k_frames)
        allowed = frame_mask(call)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        s = s.masked_fill(~token_mask(allowed, P), float("-inf"))
        mass = s.softmax(-1).reshape(B, H, Fq, P, Fk, P).sum((3, 5))
        mass = mass.masked_fill(~allowed, -1.0)
        forced = self.forced(call)
        K = max(1, min(Fk, max(math.ceil(self.config.density * Fk), int(forced.sum(1).max()), self.config.min_frames)))
        idx = pick(forced.expand(B, H, -1, -1), mass, K)[0]                 # [B, H, Fq, K]: forced ones first
        valid = allowed[torch.arange(Fq, device=q.device)[:, None], idx]
        self.stats.add(searches=1)
        return idx, valid

    def __call__(self, q, k, v, call: AttentionCall) -> Tensor:
        ctx = current_context()
        step = ctx.step if ctx is not None else 0
        key = self.key(call)
        self.stats.add(dense_macs=dense_macs(q, call), calls=1)
        if call.layer in self.config.dense_layers:                          # a dense layer: nothing to search
            return counted(self.stats, dense_attention, q, k, v, call)
        if key not in self.patterns or step == self.config.search_step:     # a first call searches too
            self.patterns[key] = self.search(q, k, call)
            return counted(self.stats, dense_attention, q, k, v, call)
        if dense_now(self.config, call):
            return counted(self.stats, dense_attention, q, k, v, call)
        idx, valid = self.patterns[key]
        return counted(self.stats, block_sparse, q, k, v, idx, valid, call.tokens)


@dataclass
class SparseVideoGenConfig:
    window: int = 1              # a spatial head's key frames: within this many frames of the query frame (all tokens)
    radius: int = 0              # a temporal head's key tokens: every allowed key frame, this many tokens around the
                                 # query's position (Chebyshev distance on the token grid; 0: the same position)
    profile_queries: int = 4     # query tokens per frame sampled to classify the heads (evenly spaced)
    profile_step: int = 0        # sampling step whose profile classifies the heads; later steps reuse it
    dense_steps: int = 0         # the first sampling steps of each generation attend densely
    dense_layers: tuple[int, ...] = ()   # these layers (block indices) always attend densely: local and global
                                         # layers interleaved (Longformer, Gemma 2)


def neighbours(tokens: int, radius: int, device=None) -> tuple[Tensor, Tensor]:
    """Per token position of a square grid of ``tokens`` positions: the positions within ``radius`` (Chebyshev)
    -> (index, valid) [P, M], M = (2 radius + 1)^2, off-grid entries invalid (index clamped)."""
    g = math.isqrt(tokens)
    if g * g != tokens:
        raise ValueError(f"a temporal head needs a square token grid per frame, got {tokens} tokens")
    r = torch.arange(-radius, radius + 1, device=device)
    dy, dx = (t.reshape(-1) for t in torch.meshgrid(r, r, indexing="ij"))
    y, x = (torch.arange(tokens, device=device) // g)[:, None] + dy, (torch.arange(tokens, device=device) % g)[:, None] + dx
    valid = (y >= 0) & (y < g) & (x >= 0) & (x < g)
    return (y.clamp(0, g - 1) * g + x.clamp(0, g - 1)), valid


def temporal_attention(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, P: int, radius: int) -> Tensor:
    """Each query token attends to the tokens within ``radius`` of its position in every allowed key frame:
    q [n, Fq*P, d], k/v [n, Fk*P, d], ``allowed`` [Fq, Fk] -> [n, Fq*P, d]."""
    n, Nq, d = q.shape
    Fq, Fk = allowed.shape
    idx, ok = neighbours(P, radius, q.device)                                       # [P, M]
    M = idx.shape[1]
    qp = q.reshape(n, Fq, P, d).transpose(1, 2)                                     # [n, P, Fq, d]
    kp, vp = (t.reshape(n, Fk, P, d)[:, :, idx].permute(0, 2, 3, 1, 4).reshape(n, P, M * Fk, d) for t in (k, v))
    keep = ok[:, None, :, None] & allowed[None, :, None, :]                        # [P, Fq, M, Fk]
    s = qp @ kp.transpose(-1, -2) / math.sqrt(d)                                    # [n, P, Fq, M*Fk]
    s = s.masked_fill(~keep.reshape(P, Fq, M * Fk), float("-inf"))
    MACS.add(2 * n * int(keep.sum()) * d)
    return (s.softmax(-1) @ vp).transpose(1, 2).reshape(n, Nq, d)


def temporal_macs(call: AttentionCall, heads: int, d: int, radius: int) -> int:
    """Multiply-accumulates of ``heads`` (sample, head) pairs of temporal attention under ``radius``."""
    ok = neighbours(call.tokens, radius, call.q_frames.device)[1]
    return 2 * heads * int(frame_mask(call).sum()) * int(ok.sum()) * d


class SparseVideoGen:
    """Processor: each head is a spatial head (sliding-tile ``window``) or a temporal head (the same token
    position, +- ``radius``, in every key frame), whichever reproduces the exact attention output better on
    sampled queries at the profile step (Sparse VideoGen, Xi et al. 2025); the classification is reused."""

    def __init__(self, config: SparseVideoGenConfig, stats: AttentionStats):
        if config.window < 0 or config.radius < 0 or config.profile_queries < 1:
            raise ValueError(f"sparse-videogen needs window >= 0, radius >= 0 and profile_queries >= 1, got {config}")
        self.config, self.stats, self.heads = config, stats, {}

    def masks(self, call: AttentionCall) -> tuple[Tensor, Tensor]:
        """Token-level [Nq, Nk] masks of the spatial and the temporal pattern (for profiling)."""
        P, allowed = call.tokens, frame_mask(call)
        dist = (call.q_frames[:, None] - call.k_frames[None, :]).abs()
        spatial = token_mask(allowed & (dist <= self.config.window), P)
        idx, ok = neighbours(P, self.config.radius, allowed.device)
        near = torch.zeros(P, P, dtype=torch.bool, device=allowed.device)
        near[torch.arange(P, device=allowed.device)[:, None].expand_as(idx)[ok], idx[ok]] = True
        temporal = token_mask(allowed, P) & near.repeat(len(call.q_frames), len(call.k_frames))
        return spatial, temporal

    @torch.no_grad()
    def profile(self, q, k, v, call: AttentionCall) -> Tensor:
        """[B, H] bool, True for a temporal head: the pattern with the smaller error on sampled queries."""
        B, H, Nq, d = q.shape
        P, Fq = call.tokens, len(call.q_frames)
        S = min(self.config.profile_queries, P)
        pos = torch.linspace(0, P - 1, S, device=q.device).round().long()
        rows = (torch.arange(Fq, device=q.device)[:, None] * P + pos[None]).reshape(-1)     # sampled queries
        allowed = token_mask(frame_mask(call), P)[rows]
        spatial, temporal = (m[rows] for m in self.masks(call))
        s = q[:, :, rows] @ k.transpose(-1, -2) / math.sqrt(d)                           # [B, H, R, Nk]
        out = [(s.masked_fill(~m, float("-inf")).softmax(-1) @ v) for m in (allowed, spatial, temporal)]
        MACS.add(4 * B * H * len(rows) * k.shape[2] * d)                                 # q k^T and three p v
        self.stats.add(macs=4 * B * H * len(rows) * k.shape[2] * d, profile_macs=4 * B * H * len(rows) * k.shape[2] * d,
                       searches=1)
        err = [((o - out[0]) ** 2).sum((2, 3)) for o in out[1:]]
        return err[1] < err[0]

    def __call__(self, q, k, v, call: AttentionCall) -> Tensor:
        ctx = current_context()
        step = ctx.step if ctx is not None else 0
        gen = ctx.generation if ctx is not None else 0
        self.stats.add(dense_macs=dense_macs(q, call), calls=1)
        if dense_now(self.config, call):
            return counted(self.stats, dense_attention, q, k, v, call)
        key = (gen, call.layer, int(call.q_frames[0]), len(call.q_frames), len(call.k_frames), q.shape[0])
        if key not in self.heads or step == self.config.profile_step:      # a first call profiles too
            self.heads[key] = self.profile(q, k, v, call)
        temporal = self.heads[key].reshape(-1)                                           # [B*H]
        B, H, Nq, d = q.shape
        qf, kf, vf = (t.reshape(B * H, 1, -1, d) for t in (q, k, v))
        out = torch.empty_like(qf)
        c, P = self.config, call.tokens
        sp = ~temporal
        if bool(sp.any()):
            idx, valid = window_pattern(call, c.window)
            n = int(sp.sum())
            out[sp] = counted(self.stats, block_sparse, qf[sp], kf[sp], vf[sp], idx.expand(n, 1, -1, -1),
                              valid.expand(n, 1, -1, -1), P)
        if bool(temporal.any()):
            out[temporal] = counted(self.stats, temporal_attention, qf[temporal, 0], kf[temporal, 0], vf[temporal, 0],
                                    frame_mask(call), P, c.radius)[:, None]
        return out.reshape(B, H, Nq, d)


def attention_modules(denoiser) -> list[VideoAttention]:
    mods = denoiser.modules() if hasattr(denoiser, "modules") else []
    return [m for m in mods if isinstance(m, VideoAttention)]


def _check(denoiser) -> str | None:
    return None if attention_modules(denoiser) else "needs a video DiT (VideoAttention layers)"


def _apply(name: str, processor_cls):
    def apply(denoiser, config) -> Handle:
        mods = attention_modules(denoiser)
        if not mods:
            raise ValueError(f"{name}: {_check(denoiser)}")
        stats = AttentionStats()
        proc = processor_cls(config, stats)
        old = [m.processor for m in mods]
        for m in mods:
            m.processor = proc

        def restore():
            for m, p in zip(mods, old):
                m.processor = p
        return Handle(name, [], None, stats, on_remove=restore)
    return apply


apply_sliding_tile = _apply("sliding-tile", SlidingTile)
apply_adaspa = _apply("adaspa", AdaSpa)
apply_sparse_videogen = _apply("sparse-videogen", SparseVideoGen)


NAMES = ("sliding-tile", "adaspa", "sparse-videogen")


def register() -> None:
    """Add the two techniques to ``effdiff.techniques`` (family ``attention``; idempotent). Not done on
    import: the registry's enumerations (README counts, plan search spaces) stay image-only until a
    caller — the video bench, a user — asks for them."""
    from ..techniques import Technique, register as reg
    family = "attention"
    reg(Technique("sliding-tile", family, SlidingTileConfig, apply_sliding_tile, _check,
                  exact=lambda n: SlidingTileConfig(window=10 ** 6), eager=lambda n: SlidingTileConfig(window=0),
                  paper="Zhang et al. 2025, Fast Video Generation with Sliding Tile Attention"))
    reg(Technique("adaspa", family, AdaSpaConfig, apply_adaspa, _check,
                  exact=lambda n: AdaSpaConfig(density=1.0), eager=lambda n: AdaSpaConfig(density=0.01),
                  paper="Xia et al. 2025, Training-free and Adaptive Sparse Attention for Efficient Long Video Generation"))
    reg(Technique("sparse-videogen", family, SparseVideoGenConfig, apply_sparse_videogen, _check,
                  exact=lambda n: SparseVideoGenConfig(window=10 ** 6), eager=lambda n: SparseVideoGenConfig(window=0),
                  paper="Xi et al. 2025, Sparse VideoGen: Accelerating Video Diffusion Transformers with "
                        "Spatial-Temporal Sparsity"))



def unregister() -> None:
    """Remove them again (tests restore the registry they found)."""
    from .. import techniques
    for n in NAMES:
        techniques._REGISTRY.pop(n, None)
