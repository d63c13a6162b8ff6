"""Patch parallelism (DistriFusion, Li et al. 2024) and sequence parallelism (Ulysses) on the
reference UNet and DiT: every rank runs the whole network on a horizontal slab of the image.

``patch_parallel(D)`` returns a denoiser whose network is a ``SlabNet``: a copy of the network
(sharing the parameters) in which the entry layer cuts this rank's slab out of the full input,
convolutions / GroupNorms / attentions are the patch layers of ``patch_layers.py``, and the exit
layer all-gathers the slabs into the full output. The network's own ``forward`` runs unchanged.

Modes (``PatchConfig``): ``sync`` exchanges fresh halos, statistics and K/V at every layer (exact);
``stale`` does so for the first ``warmup`` steps, then reuses the previous step's neighbour
activations while this step's travel asynchronously (displaced patch parallelism). GroupNorm
statistics stay synchronous in stale mode unless ``stale_groupnorm`` (DistriFusion's corrected
stale statistics; users report black images from them at small slabs, hence the default).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..models.dit import DiT
from ..models.layers import SelfAttention
from ..models.unet import UNet
from .comm import Comm, Exchange
from .net import ParallelNet, shared_copy, with_net
from .patch_layers import (PatchAttention, PatchConv2d, PatchGroupNorm, Runtime, UlyssesAttention, conv_rows,
                           halo_rows)
from .ring import RingAttention

Tensor = torch.Tensor
ATTENTION = {"gather": PatchAttention, "ulysses": UlyssesAttention, "ring": RingAttention}


@dataclass
class PatchConfig:
    """mode: "sync" (exact) or "stale" (after ``warmup`` synchronous steps); attention: "gather"
    (all-gather K/V, DistriFusion), "ulysses" (all-to-all over heads) or "ring" (K/V around the ring of
    ranks, any head count); the last two are exact in both modes."""
    mode: str = "sync"
    warmup: int = 1
    stale_groupnorm: bool = False
    attention: str = "gather"

    def __post_init__(self):
        if self.mode not in ("sync", "stale"):
            raise ValueError(f"mode must be 'sync' or 'stale', got {self.mode!r}")
        if self.attention not in ATTENTION:
            raise ValueError(f"attention must be one of {sorted(ATTENTION)}, got {self.attention!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup must be a non-negative integer, got {self.warmup!r}")


class RowSlab(nn.Module):
    """Entry: this rank's rows of the full input (rows a strided conv needs come with it), then ``layer``."""

    def __init__(self, layer: nn.Module, rt: Runtime, halo: tuple[int, int] = (0, 0)):
        super().__init__()
        self.layer, self.rt, self.halo = layer, rt, halo

    def forward(self, x: Tensor, *rest) -> Tensor:
        h = x.shape[2] // self.rt.size
        lo, hi = self.rt.rank * h, (self.rt.rank + 1) * h
        t, b = self.halo
        xs = x[:, :, max(0, lo - t):hi + b]
        pad_t, pad_b = max(0, t - lo), max(0, hi + b - x.shape[2])
        if pad_t or pad_b:
            xs = torch.nn.functional.pad(xs, (0, 0, pad_t, pad_b))
        return self.layer(xs, *rest)


class GatherRows(nn.Module):
    """Exit: ``layer`` on the slab, then every rank's slab concatenated along ``dim``."""

    def __init__(self, layer: nn.Module, rt: Runtime, dim: int):
        super().__init__()
        self.layer, self.rt, self.dim = layer, rt, dim

    def forward(self, *args) -> Tensor:
        return torch.cat(self.rt.comm.all_gather(self.layer(*args)), dim=self.dim)


class HaloFree(nn.Module):
    """A Conv2d applied to input that already carries its halo rows (padding only along W)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv

    def forward(self, x: Tensor, *_unused) -> Tensor:
        return conv_rows(self.conv, x)


def _replace(root: nn.Module, make: Callable[[nn.Module], nn.Module | None]) -> None:
    """Replace every submodule m of ``root`` for which ``make(m)`` is a module (children first seen)."""
    for name, child in list(root.named_children()):
        new = make(child)
        if new is not None:
            setattr(root, name, new)
        else:
            _replace(child, make)


def _layers(rt: Runtime, attention: str) -> Callable[[nn.Module], nn.Module | None]:
    def make(m):
        if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1:
            return PatchConv2d(m, rt)
        if isinstance(m, nn.GroupNorm):
            return PatchGroupNorm(m, rt)
        if isinstance(m, SelfAttention):
            return ATTENTION[attention](m, rt)
        return None
    return make


def _plan_unet(net: UNet, rt: Runtime, attention: str) -> int:
    """UNet: slabs aligned to the deepest downsampling; the first conv reads its halo from the full input."""
    first = net.input_blocks[0][0]
    _replace(net, _layers(rt, attention))
    net.input_blocks[0][0] = RowSlab(HaloFree(first), rt, halo_rows(first))
    net.out = GatherRows(net.out, rt, dim=2)
    return 2 ** (len(net.config.channel_mult) - 1)


def _plan_dit(net: DiT, rt: Runtime, attention: str) -> int:
    """DiT: token rows split over ranks; positional embedding sliced; final tokens gathered."""
    embed = net.x_embedder
    n = net.pos_embed.shape[1] // rt.size
    _replace(net, _layers(rt, attention))
    net.pos_embed = net.pos_embed[:, rt.rank * n:(rt.rank + 1) * n]
    net.x_embedder = RowSlab(embed, rt)
    net.final_layer = GatherRows(net.final_layer, rt, dim=1)
    return net.config.patch_size


PLANS: dict[type, Callable[[nn.Module, Runtime, str], int]] = {UNet: _plan_unet, DiT: _plan_dit}


class SlabNet(ParallelNet):
    """The network run patch-parallel: same signature and output as ``net`` on every rank."""

    def __init__(self, net: nn.Module, config: PatchConfig, comm: Comm):
        plan = next((p for cls, p in PLANS.items() if isinstance(net, cls)), None)
        if plan is None:
            raise TypeError(f"patch parallelism knows {', '.join(c.__name__ for c in PLANS)}, not {type(net).__name__}")
        if config.attention == "ulysses" and not isinstance(net, DiT):
            raise TypeError("sequence parallelism (Ulysses) is for the DiT's token sequence")
        rt = Runtime(comm, Exchange(comm), stale_norm=config.stale_groupnorm)
        inner = shared_copy(net)
        align = plan(inner, rt, config.attention)
        super().__init__(inner, config.mode == "stale", config.warmup)
        self.config, self.comm, self.rt = config, comm, rt
        size = net.config.image_size
        if size % (align * comm.size):
            raise ValueError(f"{type(net).__name__} images of {size} rows do not split into {comm.size} slabs "
                             f"of whole multiples of {align} rows")

    def reset(self) -> None:
        self.rt.exchange.reset()

    def begin(self, stale: bool) -> None:
        self.rt.stale = stale


def patch_parallel(denoiser, config: PatchConfig | None = None, comm: Comm | None = None, **fields):
    """``denoiser`` with its UNet/DiT run patch-parallel over the ranks of ``comm`` (default: the world)."""
    config = config or PatchConfig(**fields)
    return with_net(denoiser, SlabNet(denoiser.net, config, comm or Comm()))


def sequence_parallel(denoiser, comm: Comm | None = None):
    """``denoiser`` with its DiT's attention sequence-parallel (Ulysses all-to-all); exact."""
    return patch_parallel(denoiser, PatchConfig(attention="ulysses"), comm)
