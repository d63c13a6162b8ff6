"""ControlNet-XS (Zavadski, Feiden & Rother 2024, "ControlNet-XS: Rethinking the Control of
Text-to-Image Diffusion Models as Feedback-Control Systems"): a narrow control encoder that runs
beside the frozen encoder and exchanges features both ways at every block — it reads the base
block's input (concatenated) and writes back into the base block's output through a zero conv.
With ``width`` = 1/4 of the base it has a few percent of the base model's parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.unet import ResBlock
from .controlnet import hint_encoder, zero_conv
from .injection import MapOutput, block_shapes


@dataclass
class ControlNetXSConfig:
    hint_channels: int = 1
    width: float = 0.25         # control channels per block = width x base channels (at least 4)
    hint_hidden: int = 16


class ControlNetXS(nn.Module):
    """Control blocks mirroring the base encoder + middle block, fed by concatenation, feeding back by zero convs."""

    def __init__(self, unet: nn.Module, config: ControlNetXSConfig | None = None):
        super().__init__()
        self.config = c = config or ControlNetXSConfig()
        shapes = block_shapes(unet)
        base = shapes["input"] + shapes["middle"]                      # (channels, size) per exchange site
        ctrl = [max(4, round(ch * c.width)) for ch, _ in base]
        emb_dim = unet.cond_embed.noise.mlp[-1].out_features
        self.hint = hint_encoder(c.hint_channels, c.hint_hidden, ctrl[0])
        blocks = [nn.Identity()]
        for i in range(1, len(base)):
            cin = ctrl[i - 1] + base[i - 1][0]
            down = base[i][1] < base[i - 1][1]
            blocks.append(nn.Conv2d(cin, ctrl[i], 3, stride=2, padding=1) if down else ResBlock(cin, ctrl[i], emb_dim))
        self.blocks = nn.ModuleList(blocks)
        self.back = nn.ModuleList(zero_conv(cc, bc) for cc, (bc, _) in zip(ctrl, base))

    def _step(self, i: int, state: dict):
        """The exchange at site i: control block on cat(control, base input), base output += zero conv."""
        def fn(h_in, emb, out):
            if i == 0:
                state["h"] = self.hint(state.pop("hint"))
            else:
                inp = torch.cat([state["h"], h_in], dim=1)
                blk = self.blocks[i]
                state["h"] = blk(inp, emb) if isinstance(blk, ResBlock) else blk(inp)
            return out + self.back[i](state["h"])
        return fn

    def hooks(self, unet, x, noise_labels, class_labels, hint) -> list:
        state = {"hint": hint}
        sites = list(unet.input_blocks) + [unet.middle_block]
        return [(m, MapOutput(self._step(i, state))) for i, m in enumerate(sites)]
