"""T2I-Adapter (Mou et al. 2024, "T2I-Adapter: Learning Adapters to Dig out More Controllable
Ability for Text-to-Image Diffusion Models"): a light conv pyramid maps the condition to features
at each encoder resolution, added to the frozen encoder's block outputs. The features do not depend
on the noise level, so sampling computes them once per condition, not once per step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .controlnet import zero_conv
from .injection import add_output, block_shapes


@dataclass
class T2IAdapterConfig:
    hint_channels: int = 1
    hidden: int = 16            # channels of the pyramid


class T2IAdapter(nn.Module):
    """condition -> features per encoder block (zero-initialised), time-independent."""

    def __init__(self, unet: nn.Module, config: T2IAdapterConfig | None = None):
        super().__init__()
        self.config = c = config or T2IAdapterConfig()
        self.shapes = block_shapes(unet)["input"]
        sizes = sorted({s for _, s in self.shapes}, reverse=True)
        self.stem = nn.Sequential(nn.Conv2d(c.hint_channels, c.hidden, 3, padding=1), nn.SiLU())
        self.levels = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c.hidden, c.hidden, 3, stride=1 if k == 0 else 2, padding=1), nn.SiLU(),
                          nn.Conv2d(c.hidden, c.hidden, 3, padding=1), nn.SiLU()) for k in range(len(sizes)))
        self.level_of = [sizes.index(s) for _, s in self.shapes]
        self.out = nn.ModuleList(zero_conv(c.hidden, ch) for ch, _ in self.shapes)
        self._cache: tuple | None = None

    def features(self, hint: torch.Tensor) -> list[torch.Tensor]:
        """One feature map per encoder block; cached for the same condition (and unchanged weights)
        while gradients are off."""
        key = (hint, tuple(p._version for p in self.parameters()))
        if not torch.is_grad_enabled() and self._cache is not None and self._cache[0][0] is hint \
                and self._cache[0][1] == key[1]:
            return self._cache[1]
        h, per_level = self.stem(hint), []
        for level in self.levels:
            h = level(h)
            per_level.append(h)
        feats = [conv(per_level[k]) for conv, k in zip(self.out, self.level_of)]
        self._cache = (key, feats) if not torch.is_grad_enabled() else None
        return feats

    def hooks(self, unet, x, noise_labels, class_labels, hint) -> list:
        return [(b, add_output(f)) for b, f in zip(unet.input_blocks, self.features(hint))]
