"""ControlNet (Zhang, Rao & Agrawala 2023, "Adding Conditional Control to Text-to-Image Diffusion
Models"): a trainable copy of the UNet's encoder and middle block reads the noisy image plus an
encoded condition map; zero-initialised 1x1 convolutions carry its features into the frozen
UNet's skip connections and middle block, so training starts from the base model exactly.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..models.layers import zero_module
from .injection import AddToSkip, add_output, block_shapes


@dataclass
class ControlNetConfig:
    hint_channels: int = 1      # channels of the condition map
    hint_hidden: int = 16       # width of the small conv encoder of the condition map


def zero_conv(cin: int, cout: int) -> nn.Conv2d:
    """1x1 convolution with zero weight and bias (ControlNet's "zero convolution")."""
    return zero_module(nn.Conv2d(cin, cout, 1))


def hint_encoder(cin: int, hidden: int, cout: int, down: int = 1) -> nn.Sequential:
    """Conv-SiLU stack from the condition map to ``cout`` channels at 1/``down`` resolution, last conv zeroed."""
    layers = [nn.Conv2d(cin, hidden, 3, padding=1), nn.SiLU()]
    for _ in range(down.bit_length() - 1):
        layers += [nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.SiLU()]
    return nn.Sequential(*layers, zero_module(nn.Conv2d(hidden, cout, 3, padding=1)))


class ControlNet(nn.Module):
    """Trainable encoder copy of ``unet`` + zero convs; ``hooks(...)`` feeds one call of the base."""

    def __init__(self, unet: nn.Module, config: ControlNetConfig | None = None):
        super().__init__()
        self.config = c = config or ControlNetConfig()
        shapes = block_shapes(unet)
        self.cond_embed = copy.deepcopy(unet.cond_embed)
        self.input_blocks = copy.deepcopy(unet.input_blocks)
        self.middle_block = copy.deepcopy(unet.middle_block)
        self.hint = hint_encoder(c.hint_channels, c.hint_hidden, shapes["input"][0][0])
        self.zero_convs = nn.ModuleList(zero_conv(ch, ch) for ch, _ in shapes["input"])
        self.mid_zero = zero_conv(shapes["middle"][0][0], shapes["middle"][0][0])

    def residuals(self, x, noise_labels, class_labels, hint) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One residual per encoder block (for the skips) and one for the middle block."""
        emb = self.cond_embed(noise_labels, class_labels)
        h, out = x, []
        for i, block in enumerate(self.input_blocks):
            h = block(h, emb)
            if i == 0:
                h = h + self.hint(hint)
            out.append(self.zero_convs[i](h))
        return out, self.mid_zero(self.middle_block(h, emb))

    def hooks(self, unet, x, noise_labels, class_labels, hint) -> list:
        res, mid = self.residuals(x, noise_labels, class_labels, hint)
        n = len(unet.output_blocks)      # output block j eats the skip of input block n-1-j
        return [(unet.middle_block, add_output(mid))] + [(unet.output_blocks[n - 1 - i], AddToSkip(r))
                                                         for i, r in enumerate(res)]
