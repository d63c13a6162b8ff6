"""ControlNet for a DiT, as in PixArt-δ (Chen et al. 2024, "PixArt-δ: Fast and Controllable Image
Generation with Latent Consistency Models", the ControlNet-Transformer): a trainable copy of the
first N transformer blocks of the frozen DiT runs beside them. The copy's input is the base's
tokens plus the condition map patch-embedded by a zero-initialised patch embedding; the output of
copied block i goes through a zero-initialised Linear and is added to the output tokens of base
block i. With every zero layer at zero, the controlled model is the base model exactly.

    ctl = Controlled(dit, ControlNetDiT(dit, ControlNetDiTConfig(copy_blocks=3)))
    ctl(x, noise_labels, labels, hint)        # hint [B, 1, H, W], e.g. condition("edges", x0)
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..hooks import ModelHook
from ..models.layers import zero_module
from .injection import HOOK_NAME


@dataclass
class ControlNetDiTConfig:
    hint_channels: int = 1          # channels of the condition map
    copy_blocks: int | None = None  # N, the first blocks copied (None: half the depth; PixArt-δ copies 13 of 28)


class ControlNetDiT(nn.Module):
    """Trainable copy of the first N blocks of ``dit`` + zero-initialised hint embedding and output
    Linears; ``hooks(...)`` feeds one call of the base."""

    def __init__(self, dit: nn.Module, config: ControlNetDiTConfig | None = None):
        super().__init__()
        c = config or ControlNetDiTConfig()
        depth, D, p = len(dit.blocks), dit.config.hidden_size, dit.config.patch_size
        n = c.copy_blocks if c.copy_blocks is not None else max(1, depth // 2)
        if not 1 <= n <= depth:
            raise ValueError(f"copy_blocks must be in [1, {depth}] for this DiT, got {n}")
        self.config = ControlNetDiTConfig(c.hint_channels, n)     # resolved: the file records N
        self.hint_embed = zero_module(nn.Conv2d(c.hint_channels, D, kernel_size=p, stride=p))   # patchify the map
        self.blocks = copy.deepcopy(dit.blocks[:n])
        self.zero_linears = nn.ModuleList(zero_module(nn.Linear(D, D)) for _ in range(n))

    def hint_tokens(self, hint: torch.Tensor) -> torch.Tensor:
        # [B, C, H, W] -> [B, N_tokens, D], the base's token order (row-major patches)
        return self.hint_embed(hint).flatten(2).transpose(1, 2)

    def hooks(self, dit, x, noise_labels, class_labels, hint) -> list:
        branch = _Branch(self, self.hint_tokens(hint))
        return [(dit.blocks[i], _ControlBlock(branch, i)) for i in range(len(self.blocks))]


class _Branch:
    """The control branch's tokens during one call of the base (the copied blocks run in order)."""

    def __init__(self, control: ControlNetDiT, hint_tokens: torch.Tensor):
        self.control, self.hint, self.h, self.next = control, hint_tokens, None, 0


class _ControlBlock(ModelHook):
    """On base block i (called as ``block(h, c, context)``): run copied block i on the branch's tokens
    (block 0 reads the base's input tokens + the hint tokens) and add its zero-Linear output to the
    base block's output."""

    name = HOOK_NAME

    def __init__(self, branch: _Branch, i: int):
        self.branch, self.i = branch, i

    def __call__(self, module: nn.Module, call_next, h, c, context=None):
        b = self.branch
        if b.next != self.i:
            raise RuntimeError(f"DiT control: base block {self.i} ran out of order (expected block {b.next})")
        out = call_next(h, c, context)
        if self.i == 0:
            b.h = h + b.hint
        b.h = b.control.blocks[self.i](b.h, c, context)
        b.next += 1
        return out + b.control.zero_linears[self.i](b.h)
