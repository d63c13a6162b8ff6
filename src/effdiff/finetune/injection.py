"""Feeding a control network's features into a frozen UNet for one call, through effdiff's
per-instance hooks (attached for that call only, so the base model is untouched between calls).

- ``AddToSkip(r)`` on an output block adds ``r`` to the skip half of its input ``cat([h, skip])``
  (ControlNet, Zhang et al. 2023: control reaches the decoder through the skips).
- ``MapOutput(fn)`` on any block replaces its output by ``fn(h_in, emb, out)`` (T2I-Adapter adds
  features to encoder outputs; ControlNet-XS exchanges features both ways at every encoder block).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..hooks import ModelHook
from ..hooks.registry import attach

HOOK_NAME = "finetune-control"


class AddToSkip(ModelHook):
    """input [B, C_h + C_s, H, W] -> the same with r [B, C_s, H, W] added to its last C_s channels."""

    name = HOOK_NAME

    def __init__(self, r: torch.Tensor):
        self.r = r

    def __call__(self, module: nn.Module, call_next, h, *args, **kwargs):
        c = self.r.shape[1]
        return call_next(torch.cat([h[:, :-c], h[:, -c:] + self.r], dim=1), *args, **kwargs)


class MapOutput(ModelHook):
    """out -> fn(h_in, emb, out) for a block called as ``block(h_in, emb)``."""

    name = HOOK_NAME

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, module: nn.Module, call_next, h, emb=None, *args, **kwargs):
        return self.fn(h, emb, call_next(h, emb, *args, **kwargs))


def add_output(r: torch.Tensor) -> MapOutput:
    """A hook adding r to the block's output."""
    return MapOutput(lambda h, emb, out: out + r)


def injected(hooks: list[tuple[nn.Module, ModelHook]]):
    """Attach ``hooks`` for the duration of a ``with`` block (all-or-nothing)."""
    return attach(HOOK_NAME, hooks)


def block_shapes(unet: nn.Module) -> dict[str, list[tuple[int, int]]]:
    """(channels, size) of every input block's output and of the middle block's, by a probe call."""
    cfg = unet.config
    shapes: dict[str, list] = {"input": [], "middle": []}
    hooks = [(b, MapOutput(lambda h, e, out: shapes["input"].append((out.shape[1], out.shape[-1])) or out))
             for b in unet.input_blocks]
    hooks.append((unet.middle_block, MapOutput(lambda h, e, out: shapes["middle"].append((out.shape[1], out.shape[-1]))
                                               or out)))
    x = torch.zeros(1, cfg.in_channels, cfg.image_size, cfg.image_size)
    with torch.no_grad(), injected(hooks):
        unet(x, torch.zeros(1), None)
    return shapes
