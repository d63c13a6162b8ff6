"""Structured width pruning with an explicit dependency graph for effdiff's UNet and DiT.

Only widths that are private to one block are pruned, so every skip connection, residual and
concatenation keeps its shape by construction:

- UNet ``ResBlock`` hidden channels: the first conv's outputs, the matching rows of the embedding
  projection (scale and shift halves), the ``out_norm`` channels (whole GroupNorm groups, so group
  statistics are unchanged) and the second conv's inputs.
- DiT ``Mlp`` hidden units: ``fc1`` outputs and ``fc2`` inputs.

Attention heads are not pruned (effdiff's attention derives the head width from its input width).
``groups(net)`` lists the coupled groups; ``prune(net, keep)`` shrinks them to the kept indices.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.dit import Mlp
from ..models.unet import ResBlock
from .importance import taylor


@dataclass
class Group:
    """One prunable width: ``name`` of the owning block, the block, its ``width`` and the unit it
    prunes in (channels per GroupNorm group, else 1)."""
    name: str
    module: nn.Module
    width: int
    unit: int

    def importance(self) -> torch.Tensor:
        """Taylor importance per channel [width], summed over every coupled weight."""
        m, w = self.module, self.width
        if isinstance(m, Mlp):
            return (taylor(m.fc1.weight).sum(1) + taylor(m.fc1.bias) + taylor(m.fc2.weight).sum(0))
        conv1, emb, conv2 = m.in_layers[2], m.emb_layers[1], m.out_layers[2]
        e = taylor(emb.weight).sum(1) + taylor(emb.bias)
        return (taylor(conv1.weight).sum((1, 2, 3)) + taylor(conv1.bias) + e[:w] + e[w:]
                + taylor(m.out_norm.weight) + taylor(m.out_norm.bias) + taylor(conv2.weight).sum((0, 2, 3)))


def groups(net: nn.Module) -> list[Group]:
    """The prunable widths of ``net`` (ResBlock hidden channels, DiT MLP hidden units)."""
    out = []
    for name, m in net.named_modules():
        if isinstance(m, ResBlock):
            out.append(Group(name, m, m.out_norm.num_channels, m.out_norm.num_channels // m.out_norm.num_groups))
        elif isinstance(m, Mlp):
            out.append(Group(name, m, m.fc1.out_features, 1))
    return out


def choose(group: Group, ratio: float) -> torch.Tensor:
    """Indices kept: the most important (1 - ratio) of the width, in whole units, at least one unit."""
    imp = group.importance().reshape(-1, group.unit).sum(1)             # per unit (GroupNorm group)
    n_units = len(imp)
    keep_units = max(1, round(n_units * (1 - ratio)))
    units = imp.topk(keep_units).indices.sort().values
    return (units[:, None] * group.unit + torch.arange(group.unit)).reshape(-1)


def slice_linear(l: nn.Linear, rows=None, cols=None) -> nn.Linear:
    w = l.weight.detach()
    w = w[rows] if rows is not None else w
    w = w[:, cols] if cols is not None else w
    new = nn.Linear(w.shape[1], w.shape[0], bias=l.bias is not None)
    new.weight.data.copy_(w)
    if l.bias is not None:
        new.bias.data.copy_(l.bias.detach()[rows] if rows is not None else l.bias.detach())
    return new


def _conv(c: nn.Conv2d, rows=None, cols=None) -> nn.Conv2d:
    w = c.weight.detach()
    w = w[rows] if rows is not None else w
    w = w[:, cols] if cols is not None else w
    new = nn.Conv2d(w.shape[1], w.shape[0], c.kernel_size, c.stride, c.padding, bias=c.bias is not None)
    new.weight.data.copy_(w)
    if c.bias is not None:
        new.bias.data.copy_(c.bias.detach()[rows] if rows is not None else c.bias.detach())
    return new


PARTS = {Mlp: ("fc1", "fc2"), ResBlock: ("in_layers", "emb_layers", "out_norm", "out_layers")}


def parts(m: nn.Module) -> dict:
    """The children ``shrink`` replaces (kept to undo it): the Sequentials' items and direct children."""
    out = {}
    for a in PARTS[type(m)]:
        child = getattr(m, a)
        out[a] = list(child) if isinstance(child, nn.Sequential) else child
    return out


def restore(m: nn.Module, saved: dict) -> None:
    for a, child in saved.items():
        if isinstance(child, list):
            seq = getattr(m, a)
            for i, c in enumerate(child):
                seq[i] = c
        else:
            setattr(m, a, child)


def shrink(m: nn.Module, keep: torch.Tensor) -> None:
    """Shrink one block's private width to ``keep`` (in place)."""
    if isinstance(m, Mlp):
        m.fc1, m.fc2 = slice_linear(m.fc1, rows=keep), slice_linear(m.fc2, cols=keep)
        return
    w = m.out_norm.num_channels
    unit = w // m.out_norm.num_groups
    m.in_layers[2] = _conv(m.in_layers[2], rows=keep)
    m.emb_layers[1] = slice_linear(m.emb_layers[1], rows=torch.cat([keep, keep + w]))
    norm = nn.GroupNorm(len(keep) // unit, len(keep), eps=m.out_norm.eps)
    norm.weight.data.copy_(m.out_norm.weight.detach()[keep])
    norm.bias.data.copy_(m.out_norm.bias.detach()[keep])
    m.out_norm = norm
    m.out_layers[2] = _conv(m.out_layers[2], cols=keep)


def widths(net: nn.Module) -> dict[str, int]:
    """Block name -> its current private width (what a pruned checkpoint records)."""
    return {g.name: g.width for g in groups(net)}


def resize(net: nn.Module, plan: dict[str, int]) -> None:
    """Give a freshly built network the widths of ``plan`` (weights are then loaded over them)."""
    mods = dict(net.named_modules())
    for name, width in plan.items():
        if name not in mods:
            raise KeyError(f"pruning plan names {name!r}, which this network does not have")
        shrink(mods[name], torch.arange(width))


_linear = slice_linear    # the old private name
