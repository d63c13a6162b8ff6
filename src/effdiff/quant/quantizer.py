"""Uniform affine quantization: q = clamp(round(x / s) + z, qmin, qmax), x̂ = (q - z) s (Jacob et al. 2018).

Scales and zero-points are tensors that broadcast against x, so one function serves every
granularity: per-tensor, per-channel (scale [O, 1, ...]), per-group or per-segment (scale repeated
along the input channels) and per-token (scale [..., 1], computed at call time).
``fake_quant`` rounds with a straight-through estimator (Bengio et al. 2013) so gradients pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

Tensor = torch.Tensor
EPS = 1e-8
GRANULARITIES = ("tensor", "channel", "group", "token")


@dataclass(frozen=True)
class QuantSpec:
    """How one tensor is quantized: ``bits`` (2-16), ``symmetric`` (zero-point 0, range [-qmax, qmax])
    or asymmetric ([0, 2^b - 1] with a zero-point), and the ``granularity`` of its scales; ``group_size``:
    input channels per group (granularity "group")."""
    bits: int = 8
    symmetric: bool = True
    granularity: str = "tensor"
    group_size: int | None = None

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 2 <= self.bits <= 16:
            raise ValueError(f"bits must be an integer in [2, 16], got {self.bits!r}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {self.granularity!r}; known: {', '.join(GRANULARITIES)}")
        if self.granularity == "group" and not (isinstance(self.group_size, int) and self.group_size > 0):
            raise ValueError(f"granularity 'group' needs a positive group_size, got {self.group_size!r}")

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1) - 1) if self.symmetric else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.symmetric else 2 ** self.bits - 1


def qparams(lo: Tensor, hi: Tensor, spec: QuantSpec) -> tuple[Tensor, Tensor]:
    """(scale, zero_point) mapping the range [lo, hi] onto the integer grid of ``spec``."""
    lo, hi = torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi))
    if spec.symmetric:
        scale = torch.maximum(-lo, hi) / spec.qmax
        return scale.clamp_min(EPS), torch.zeros_like(scale)
    scale = ((hi - lo) / (spec.qmax - spec.qmin)).clamp_min(EPS)
    zero = (spec.qmin - torch.round(lo / scale)).clamp(spec.qmin, spec.qmax)
    return scale, zero


def quantize(x: Tensor, scale: Tensor, zero: Tensor, spec: QuantSpec) -> Tensor:
    """Integer codes of x (int8 up to 8 bits, int16/int32 above), clamped to the grid."""
    q = torch.clamp(torch.round(x / scale) + zero, spec.qmin, spec.qmax)
    dtype = torch.int8 if spec.bits <= 8 and spec.symmetric else torch.int16 if spec.bits <= 15 else torch.int32
    return q.to(dtype)


def dequantize(q: Tensor, scale: Tensor, zero: Tensor) -> Tensor:
    """x̂ = (q - z) s in the scale's dtype."""
    return (q.to(scale.dtype) - zero) * scale


def fake_quant(x: Tensor, scale: Tensor, zero: Tensor, spec: QuantSpec) -> Tensor:
    """Quantize then dequantize in floating point; the rounding passes gradients straight through."""
    q = torch.clamp(torch.round(x / scale) + zero, spec.qmin, spec.qmax)
    out = (q - zero) * scale
    return x + (out - x).detach() if x.requires_grad else out


def rows(x: Tensor, dim: int) -> Tensor:
    """x as [x.shape[dim], everything else]: the values each scale along ``dim`` covers."""
    return x.transpose(0, dim).reshape(x.shape[dim], -1)


def token_range(x: Tensor, channel_dim: int) -> tuple[Tensor, Tensor]:
    """Per-token (lo, hi): the range over the channel dimension at each position, kept as size 1."""
    return x.amin(dim=channel_dim, keepdim=True), x.amax(dim=channel_dim, keepdim=True)


def expand_segments(values: Tensor, bounds: tuple[int, ...]) -> Tensor:
    """[..., S] per-segment values -> [..., C] per-channel, segment i covering channels bounds[i]:bounds[i+1]."""
    sizes = torch.tensor([b - a for a, b in zip(bounds[:-1], bounds[1:])], device=values.device)
    return torch.repeat_interleave(values, sizes, dim=-1)


def segments(channels: int, spec: QuantSpec, split: int | None = None) -> tuple[int, ...]:
    """Channel boundaries of the input-channel segments a weight's scales cover: one segment
    (per-channel), equal groups (per-group), or two at ``split`` (Q-Diffusion's split quantization)."""
    if split is not None and 0 < split < channels:
        return (0, split, channels)
    if spec.granularity == "group":
        if channels % spec.group_size:
            return (0, channels)   # a layer the group size does not divide keeps per-channel scales
        return tuple(range(0, channels + 1, spec.group_size))
    return (0, channels)
