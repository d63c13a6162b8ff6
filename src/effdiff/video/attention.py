"""Space-time self-attention for the video DiT, with a swappable attention processor.

Tokens are frame-major (all patches of frame 0, then frame 1, ...). Queries and keys carry their
frame index; the temporal position enters as rotary embeddings (RoPE, Su et al. 2021) on the
frame index, so attention depends only on frame *offsets* — which is what lets cached keys of
earlier blocks be reused unchanged and a model trained on 16 frames stream 128.

The processor (``attn.processor``, diffusers' pattern) computes ``softmax(q k^T / sqrt(d)) v`` for
one ``AttentionCall``; the dense one here, block-sparse ones in ``video/sparse.py``. Each
processor adds the multiply-accumulates it performed to ``MACS`` so benches count attention cost.
"""
from __future__ import annotations

import functools

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


class MacCounter:
    """Attention multiply-accumulates (q k^T and p v) performed since ``reset()``."""

    def __init__(self):
        self.macs = 0

    def reset(self) -> None:
        self.macs = 0

    def add(self, n: int) -> None:
        self.macs += int(n)


MACS = MacCounter()


@dataclass
class AttentionCall:
    """One attention evaluation. ``q_frames`` [Fq] / ``k_frames`` [Fk]: frame index of each query /
    key frame (``tokens`` tokens per frame); ``mask`` [Fq, Fk] bool frame-level (True: attend) or None
    (all); ``layer``: the block index."""
    q_frames: Tensor
    k_frames: Tensor
    tokens: int
    mask: Tensor | None
    layer: int


def token_mask(mask: Tensor | None, tokens: int) -> Tensor | None:
    """A frame-level mask [Fq, Fk] expanded to tokens [Fq*P, Fk*P]."""
    if mask is None:
        return None
    return mask.repeat_interleave(tokens, 0).repeat_interleave(tokens, 1)


def dense_macs(q: Tensor, call: AttentionCall) -> int:
    """q k^T and p v multiply-accumulates of exact attention over the token pairs the call's mask allows."""
    B, H, Nq, d = q.shape
    pairs = Nq * len(call.k_frames) * call.tokens if call.mask is None else int(call.mask.sum()) * call.tokens ** 2
    return 2 * B * H * pairs * d


def dense_attention(q: Tensor, k: Tensor, v: Tensor, call: AttentionCall) -> Tensor:
    """Exact attention [B, H, Nq, d]; counts its ``dense_macs``."""
    MACS.add(dense_macs(q, call))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=token_mask(call.mask, call.tokens))


def rope(x: Tensor, frames: Tensor, tokens: int, base: float = 10000.0) -> Tensor:
    """Rotate channel pairs of x [..., F*P, d] (e.g. [B, H, F*P, d], or q and k stacked) by angle
    frame * base^(-2i/d) (RoPE on time)."""
    return rotate(x, *_rope_table(tuple(frames.tolist()), tokens, x.shape[-1], base, x.dtype, x.device))


def rotate(x: Tensor, cos: Tensor, sin: Tensor, z: Tensor | None) -> Tensor:
    """Channel pairs (x1, x2) of x [..., d] -> (x1 cos - x2 sin, x1 sin + x2 cos), with cos, sin [..., d/2] (and
    ``z`` = cos + i sin) broadcast against x's pairs. In float32/64 it is one complex product, (x1 + i x2) z: the
    same products and sums without slicing the pairs apart, 8x faster on a streamed block
    (docs/bench/video/stream-wall-defaults/micro.py). PyTorch's scalar loop may fuse a product and a sum: a last-bit
    difference at most. Eager only: torch.compile fuses the real form and has no code generation for complex numbers."""
    if z is not None and not torch.compiler.is_compiling():
        if x.stride(-1) != 1 or any(st % 2 for st in x.stride()[:-1]):
            x = x.contiguous()
        return torch.view_as_real(torch.view_as_complex(x.unflatten(-1, (-1, 2))) * z).flatten(-2)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


@functools.lru_cache(maxsize=512)
def _rope_table(frames: tuple, tokens: int, d: int, base: float, dtype, device) -> tuple[Tensor, Tensor, Tensor | None]:
    """cos, sin [F*P, d/2] of RoPE's angles and cos + i sin (None outside float32/64), computed once per (frames,
    tokens, width, dtype): a streamed clip asks for the same few frame sets in every solver step."""
    inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64, device=device) / d)                     # [d/2]
    f = torch.tensor(frames, dtype=torch.float64, device=device)
    ang = (f.repeat_interleave(tokens)[:, None] * inv[None]).to(dtype)                                  # [N, d/2]
    cos, sin = ang.cos(), ang.sin()
    return cos, sin, torch.complex(cos, sin) if dtype in (torch.float32, torch.float64) else None


class VideoAttention(nn.Module):
    """Multi-head self-attention over space-time tokens with RoPE on the frame index; optional
    extra keys/values (a KV cache of earlier frames) prepended to the keys."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads or (dim // num_heads) % 2:
            raise ValueError(f"dim {dim} must split into {num_heads} heads of even width")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.processor = dense_attention

    def project(self, x: Tensor, frames: Tensor, tokens: int) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, N, D] -> q, k, v [B, H, N, D/H] with RoPE applied to q and k."""
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, D // self.num_heads)
        table = _rope_table(tuple(frames.tolist()), tokens, D // self.num_heads, 10000.0, x.dtype, x.device)
        qk = rotate(qkv[:, :, :2], *(None if t is None else t[:, None, None] for t in table))  # q and k at once
        q, k = qk.permute(2, 0, 3, 1, 4)
        return q, k, qkv[:, :, 2].transpose(1, 2)

    def forward(self, x: Tensor, frames: Tensor, tokens: int, mask: Tensor | None = None, layer: int = 0,
                past: tuple[Tensor, Tensor, Tensor] | None = None, sink: list | None = None) -> Tensor:
        """x [B, N, D] -> [B, N, D]. ``past`` = (k, v, frames) of cached frames, attended before x's own
        keys (a mask then covers [past frames | own frames]); ``sink``: x's (k, v) are appended to it
        (the output stays a tensor, so feature-caching hooks see an ordinary attention module)."""
        B, N, D = x.shape
        q, k, v = self.project(x, frames, tokens)
        if sink is not None:
            sink.append((k, v))
        kf, kk, vv = frames, k, v
        if past is not None:
            kk, vv, kf = past.join(k, v, frames)       # a block_causal.Past
        out = self.processor(q, kk, vv, AttentionCall(frames, kf, tokens, mask, layer))
        return self.proj(out.transpose(1, 2).reshape(B, N, D))
