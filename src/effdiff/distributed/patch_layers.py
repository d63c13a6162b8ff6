"""The layers of patch parallelism (DistriFusion, Li et al. 2024): each rank holds a horizontal
slab of every feature map (rows ``[r·h, (r+1)·h)``) and these replacements make each layer see
what it needs of the others. Each reuses the original layer's parameters.

- ``PatchConv2d``: a k x k convolution gets the neighbour slabs' boundary rows (halo) first.
- ``PatchGroupNorm``: group statistics summed over all slabs (sync), or DistriFusion's corrected
  stale statistics: the other slabs' sums from the previous call plus this slab's fresh ones.
- ``PatchAttention``: local queries against the keys/values of every slab (gathered).
- ``UlyssesAttention``: sequence parallel (DeepSpeed-Ulysses, Jacobs et al. 2023): an all-to-all
  turns token slabs x all heads into all tokens x a share of heads, attention, and back.

In stale (displaced) mode the halo, statistics and K/V of other slabs come from the previous
evaluation while this one's are sent asynchronously (``Exchange``); ``Runtime.stale`` says
whether this evaluation is one of those.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .comm import Comm, Exchange

Tensor = torch.Tensor


@dataclass
class Runtime:
    """What every patch layer of one model shares: the comm, the exchange and this call's mode."""
    comm: Comm
    exchange: Exchange
    stale: bool = False          # this evaluation uses stale neighbour data
    stale_norm: bool = False     # ... also for GroupNorm statistics

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def size(self) -> int:
        return self.comm.size


def halo_rows(conv: nn.Conv2d) -> tuple[int, int]:
    """(top, bottom) input rows a slab needs from its neighbours: output row o of a k-row kernel
    with stride s and padding p reads rows o·s - p .. o·s - p + k - 1."""
    k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    return p, max(0, k - p - s)


def conv_rows(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv`` on rows that already include the halo: zero padding along W only."""
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, (0, conv.padding[1]), conv.dilation, conv.groups)


class PatchConv2d(nn.Module):
    """A Conv2d on a row slab, exact with fresh halos (zero rows at the image border = zero padding)."""

    def __init__(self, conv: nn.Conv2d, rt: Runtime):
        super().__init__()
        if conv.dilation != (1, 1) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"patch parallelism supports zero-padded, undilated convolutions, got {conv}")
        self.conv, self.rt = conv, rt
        self.top, self.bottom = halo_rows(conv)

    def forward(self, x: Tensor, *_unused) -> Tensor:
        if self.top or self.bottom:
            x = self.with_halo(x)
        return conv_rows(self.conv, x)

    def with_halo(self, x: Tensor) -> Tensor:
        """[B, C, h, W] -> [B, C, top + h + bottom, W] with the neighbours' rows (stale or fresh)."""
        rt, t, b = self.rt, self.top, self.bottom
        if x.shape[2] < max(t, b):
            raise ValueError(f"a slab of {x.shape[2]} rows is thinner than the {max(t, b)}-row halo: use fewer ranks")
        edges = torch.cat([x[:, :, :b], x[:, :, x.shape[2] - t:]], dim=2)      # [B, C, b + t, W]
        slabs = rt.exchange.gather(id(self), edges, rt.stale)
        r, R = rt.rank, rt.size
        above = slabs[r - 1][:, :, b:] if r > 0 else x.new_zeros(x.shape[0], x.shape[1], t, x.shape[3])
        below = slabs[r + 1][:, :, :b] if r < R - 1 else x.new_zeros(x.shape[0], x.shape[1], b, x.shape[3])
        return torch.cat([above, x, below], dim=2)


class PatchGroupNorm(nn.Module):
    """GroupNorm whose statistics cover the whole image (sums of x and x² over all slabs, float64)."""

    def __init__(self, norm: nn.GroupNorm, rt: Runtime):
        super().__init__()
        self.norm, self.rt = norm, rt

    def forward(self, x: Tensor) -> Tensor:
        g, rt = self.norm, self.rt
        B, G = x.shape[0], g.num_groups
        xg = x.reshape(B, G, -1)                                                   # [B, G, n]
        x64 = xg.double()
        local = torch.stack([x64.sum(-1), x64.pow(2).sum(-1)], dim=-1)            # [B, G, 2]
        total = torch.stack(rt.exchange.gather(id(self), local, rt.stale and rt.stale_norm)).sum(0)
        n = xg.shape[-1] * rt.size
        mean = total[..., 0] / n
        var = (total[..., 1] / n - mean ** 2).clamp_min(0)
        y = (x64 - mean[..., None]) * torch.rsqrt(var[..., None] + g.eps)
        y = y.to(x.dtype).reshape_as(x)
        if g.affine:
            y = y * g.weight.view(1, -1, *([1] * (x.ndim - 2))) + g.bias.view(1, -1, *([1] * (x.ndim - 2)))
        return y


def split_heads(attn: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v of a ``SelfAttention`` for tokens x [B, n, D]: each [B, n, H, D/H]."""
    B, n, D = x.shape
    qkv = attn.qkv(x).reshape(B, n, 3, attn.num_heads, D // attn.num_heads)
    return qkv.unbind(2)


class SlabAttention(nn.Module):
    """A ``SelfAttention`` over this rank's slab of tokens x [B, n, D] whose keys and values span every
    rank's slab: the wrapper the patch, Ulysses and ring paths share. A subclass's ``attend(q, k, v)``
    takes this slab's q, k, v [B, n, H, d] and returns the attended values [B, n, H, d] (any layout
    that reshapes to [B, n, D]); the output projection is the wrapped layer's own."""

    def __init__(self, attn: nn.Module, rt: Runtime):
        super().__init__()
        self.attn, self.rt = attn, rt

    def forward(self, x: Tensor) -> Tensor:
        B, n, D = x.shape
        return self.attn.proj(self.attend(*split_heads(self.attn, x)).reshape(B, n, D))

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        raise NotImplementedError


class PatchAttention(SlabAttention):
    """Self-attention of this slab's tokens (queries) over all slabs' keys and values."""

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        kv = torch.cat(self.rt.exchange.gather(id(self), torch.stack([k, v]), self.rt.stale), dim=2)  # [2, B, N, H, d]
        out = F.scaled_dot_product_attention(q.transpose(1, 2), kv[0].transpose(1, 2), kv[1].transpose(1, 2))
        return out.transpose(1, 2)


class UlyssesAttention(SlabAttention):
    """Self-attention by all-to-all over heads (exact; needs heads divisible by the ranks)."""

    def __init__(self, attn: nn.Module, rt: Runtime):
        if attn.num_heads % rt.size:
            raise ValueError(f"Ulysses needs the {attn.num_heads} heads divisible by {rt.size} ranks")
        super().__init__(attn, rt)

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        B, n = q.shape[:2]
        R, H = self.rt.size, self.attn.num_heads
        qkv = torch.stack([q, k, v])                                              # [3, B, n, H, d]
        qkv = qkv.reshape(3, B, n, R, H // R, -1).permute(3, 0, 1, 2, 4, 5)       # [R(head group), 3, B, n, H/R, d]
        qkv = self.rt.comm.all_to_all(qkv)                                        # [R(token slab), 3, B, n, H/R, d]
        q, k, v = qkv.permute(1, 2, 4, 0, 3, 5).flatten(3, 4)                     # each [B, H/R, N, d]
        out = F.scaled_dot_product_attention(q, k, v)                             # [B, H/R, N, d]
        out = out.reshape(B, H // R, R, n, -1).permute(2, 0, 3, 1, 4)             # [R(token slab), B, n, H/R, d]
        out = self.rt.comm.all_to_all(out)                                        # [R(head group), B, n, H/R, d]
        return out.permute(1, 2, 0, 3, 4)                                         # [B, n, R, H/R, d]


_heads = split_heads    # the old private name
