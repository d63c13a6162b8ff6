"""Where techniques attach: the blocks of a UNet or a diffusion transformer, found once.

A technique is applied to a denoiser (``ed.zoo.load(...)``, a ``DiffusersDenoiser``, a guided
denoiser) or to a bare network; ``network(model)`` is the ``nn.Module`` that holds the blocks.

- UNet: effdiff's / ADM's ``input_blocks`` -> ``middle_block`` -> ``output_blocks``, or diffusers'
  ``UNet2DConditionModel`` ``down_blocks`` -> ``mid_block`` -> ``up_blocks`` (``unet(model)``).
- Transformer: effdiff's DiT ``blocks`` or diffusers' ``transformer_blocks`` (``dit_blocks``);
  a block's self-attention is ``attn`` (diffusers ``attn1``), its MLP ``mlp`` (``ff``).

Blocks are named ``"<attribute>.<i>"`` (``"input_blocks.3"``, ``"middle_block"``, ``"blocks.2"``);
a block list in a config (``blocks=``) holds such names or indices into ``blocks(model)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from torch import nn

UNET_ATTRS = (("input_blocks", "middle_block", "output_blocks"),   # effdiff / ADM
              ("down_blocks", "mid_block", "up_blocks"))           # diffusers UNet2DConditionModel
DIT_ATTRS = ("blocks", "transformer_blocks")
SUBLAYERS = {"attn": ("attn", "attn1"), "mlp": ("mlp", "ff")}


def network(model):
    """The network inside a denoiser wrapper (``.net``; through a guidance wrapper's
    ``.denoiser``), or ``model`` itself."""
    seen = set()
    while id(model) not in seen:
        seen.add(id(model))
        inner = getattr(model, "net", None)
        if isinstance(inner, nn.Module):
            return inner
        inner = getattr(model, "denoiser", None)
        if inner is None:
            return model
        model = inner
    return model


@dataclass(frozen=True)
class UNetBlocks:
    """The three parts of a UNet, with their attribute names (for site names)."""
    net: nn.Module
    input_blocks: Sequence[nn.Module]
    middle_block: nn.Module
    output_blocks: Sequence[nn.Module]
    names: tuple[str, str, str] = UNET_ATTRS[0]

    def input(self, i: int) -> tuple[str, nn.Module]:
        return f"{self.names[0]}.{i}", self.input_blocks[i]

    def middle(self) -> tuple[str, nn.Module]:
        return self.names[1], self.middle_block

    def output(self, i: int) -> tuple[str, nn.Module]:
        return f"{self.names[2]}.{i}", self.output_blocks[i]

    def all(self) -> list[tuple[str, nn.Module]]:
        """Every block in call order: input blocks, the middle block, output blocks."""
        return ([self.input(i) for i in range(len(self.input_blocks))] + [self.middle()]
                + [self.output(i) for i in range(len(self.output_blocks))])


def find_unet(model) -> UNetBlocks | None:
    """The UNet parts of ``model``'s network, or None when it is not a UNet."""
    net = network(model)
    for names in UNET_ATTRS:
        parts = [getattr(net, a, None) for a in names]
        if all(p is not None for p in parts):
            return UNetBlocks(net, *parts, names=names)
    return None


def find_dit_blocks(model) -> tuple[str, Sequence[nn.Module]] | None:
    """(attribute name, blocks) of a transformer's block list, or None."""
    net = network(model)
    for a in DIT_ATTRS:
        blocks = getattr(net, a, None)
        if blocks is not None and len(blocks) > 0:
            return a, blocks
    return None


def unet(model, who: str = "this technique") -> UNetBlocks:
    """The UNet parts, or a TypeError saying what ``who`` needs."""
    u = find_unet(model)
    if u is None:
        raise TypeError(f"{who} needs a UNet with input_blocks/middle_block/output_blocks (or diffusers' "
                        f"down_blocks/mid_block/up_blocks); got {type(network(model)).__name__}")
    return u


def dit_blocks(model, who: str = "this technique") -> Sequence[nn.Module]:
    """A transformer's blocks, or a TypeError saying what ``who`` needs."""
    found = find_dit_blocks(model)
    if found is None:
        raise TypeError(f"{who} needs a transformer with .blocks (or .transformer_blocks); "
                        f"got {type(network(model)).__name__}")
    return found[1]


def kind(model) -> str | None:
    """"unet", "dit" or None (neither)."""
    return "unet" if find_unet(model) is not None else "dit" if find_dit_blocks(model) is not None else None


def blocks(model, who: str = "this technique") -> list[tuple[str, nn.Module]]:
    """Every block of a UNet or a transformer, named, in call order."""
    u = find_unet(model)
    if u is not None:
        return u.all()
    found = find_dit_blocks(model)
    if found is None:
        raise TypeError(f"{who} needs a UNet (input_blocks/middle_block/output_blocks) or a transformer "
                        f"with .blocks; got {type(network(model)).__name__}")
    attr, bs = found
    return [(f"{attr}.{i}", b) for i, b in enumerate(bs)]


def select(model, wanted: Sequence[int | str] | None, default=None, who: str = "this technique"):
    """The blocks named (or indexed, into ``blocks(model)``) by a config's ``blocks`` option, in
    call order; ``default`` (or all blocks) when ``wanted`` is None. ValueError names unknown ones."""
    every = blocks(model, who)
    if wanted is None:
        return list(every if default is None else default)
    if isinstance(wanted, (str, int)):
        raise TypeError(f"blocks must be a tuple of block names or indices, got {wanted!r}")
    names = [s for s, _ in every]
    chosen = set()
    for w in wanted:
        if isinstance(w, bool) or not isinstance(w, (int, str)):
            raise TypeError(f"a block is a name or an index, got {w!r}")
        if isinstance(w, int) and not -len(every) <= w < len(every):
            raise ValueError(f"block index {w} out of range: this model has {len(every)} blocks")
        if isinstance(w, str) and w not in names:
            raise ValueError(f"unknown block {w!r}; this model has {names}")
        chosen.add(names[w] if isinstance(w, int) else w)
    return [(s, m) for s, m in every if s in chosen]


def sublayer(block: nn.Module, part: str) -> nn.Module | None:
    """A transformer block's ``"attn"`` (self-attention) or ``"mlp"``, under effdiff's or diffusers' name."""
    for name in SUBLAYERS[part]:
        m = getattr(block, name, None)
        if isinstance(m, nn.Module):
            return m
    return None


def named(model: nn.Module, names: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of the submodules of ``model`` whose own name is in ``names``."""
    return [(q, m) for q, m in model.named_modules() if q.rsplit(".", 1)[-1] in names and m is not None]


def replace(net: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` where the submodule ``name`` of ``net`` is; returns the module it replaced."""
    parent_name, _, child = name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old
