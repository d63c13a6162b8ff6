"""Q-Diffusion's split quantization of skip concatenations (Li et al. 2023, §3.3).

A UNet decoder block sees ``cat([h, skip])``: two tensors with very different ranges. The layers
that read the concatenation (the first conv and the 1x1 shortcut of the block's first ResBlock)
get one activation scale per part and weight scales per output channel *and* part, split at the
channel where the skip begins. ``skip_splits(model)`` finds those layers in effdiff's UNet.
"""
from __future__ import annotations

from torch import nn

from ..sites import find_unet


def out_channels(block: nn.Module) -> int | None:
    """Channels a UNet block outputs: those of its last convolution (attention keeps them)."""
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels if convs else None


def skip_splits(model) -> dict[str, int]:
    """Layer name (in the network) -> the input channel where the skip half of its input begins.
    Empty for networks without effdiff-style ``cat([h, hs.pop()])`` decoder blocks."""
    u = find_unet(model)
    if u is None or u.names[0] != "input_blocks":
        return {}
    out, h = {}, out_channels(u.middle_block)
    for j, block in enumerate(u.output_blocks):
        first = block[0]
        for part in ("in_layers.2", "skip"):
            layer = first.get_submodule(part) if hasattr(first, "in_layers") else None
            if isinstance(layer, nn.Conv2d) and h is not None and layer.in_channels > h:
                out[f"{u.names[2]}.{j}.0.{part}"] = h
        h = out_channels(block)
    return out
