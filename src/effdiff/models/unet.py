"""ADM-style UNet with explicit skip branches (Ho et al. 2020; Dhariwal & Nichol 2021).

The network is `input_blocks` -> `middle_block` -> `output_blocks`; forward keeps the
input-block outputs in a list `hs` and every output block concatenates `hs.pop()`, as in
the ADM code. Feature caching such as DeepCache (Ma et al. 2024) cuts the network at
these skip branches. Every block is an `EmbedSequential` called as `block(h, emb)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConditionEmbedding, SelfAttention, check_inputs, group_norm, zero_module


@dataclass
class UNetConfig:
    model_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4,)  # feature-map sizes that get self-attention
    dropout: float = 0.0
    num_classes: int = 10  # 0 = unconditional; label `num_classes` is the null class
    in_channels: int = 1
    image_size: int = 8
    num_heads: int = 4

    def __post_init__(self):
        # JSON turns tuples into lists; keep the dataclass round-trip exact.
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        self.attention_resolutions = tuple(int(r) for r in self.attention_resolutions)
        if not self.channel_mult or self.num_res_blocks < 1 or self.model_channels < 1:
            raise ValueError("UNetConfig needs channel_mult non-empty, num_res_blocks >= 1, model_channels >= 1")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")
        down = 2 ** (len(self.channel_mult) - 1)
        if self.image_size % down:
            raise ValueError(f"image_size {self.image_size} is not divisible by 2**(levels-1) = {down}")
        for m in self.channel_mult:
            if (m * self.model_channels) % self.num_heads:
                raise ValueError(f"channels {m * self.model_channels} not divisible by num_heads {self.num_heads}")


class EmbedSequential(nn.Sequential):
    """Sequential whose children are all called as `layer(h, emb)` (ADM's TimestepEmbedSequential)."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            h = layer(h, emb)
        return h


class Conv(nn.Conv2d):
    """3x3 conv that accepts (and ignores) the embedding so every block has one signature."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 3, padding=1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(h)


class Downsample(nn.Module):
    """Strided 3x3 conv: [B, C, H, W] -> [B, C, H/2, W/2]."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(h)


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv: [B, C, H, W] -> [B, C, 2H, 2W]."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, embedding injected by scale-shift norm (ADM), zero-init last conv."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.in_layers = nn.Sequential(
            group_norm(in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_channels))
        self.out_norm = group_norm(out_channels)
        self.out_layers = nn.Sequential(
            nn.SiLU(), nn.Dropout(dropout), zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # x: [B, Cin, H, W], emb: [B, E] -> [B, Cout, H, W]
        h = self.in_layers(x)
        scale, shift = self.emb_layers(emb)[:, :, None, None].chunk(2, dim=1)  # [B, Cout, 1, 1] each
        h = self.out_norm(h) * (1 + scale) + shift
        return self.skip(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Spatial self-attention with a residual; output projection zero-initialised (ADM)."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.attn = SelfAttention(channels, num_heads)
        zero_module(self.attn.proj)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        out = self.attn(tokens).transpose(1, 2).reshape(B, C, H, W)
        return x + out


class UNet(nn.Module):
    """Class-conditional ADM UNet: net(x [B,C,H,W], noise_labels [B], class_labels [B] | None) -> [B,C,H,W]."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else UNetConfig()
        ch = cfg.model_channels
        emb_dim = 4 * ch
        self.cond_embed = ConditionEmbedding(ch, emb_dim, cfg.num_classes)

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, cfg.dropout)

        def attn(c: int) -> AttentionBlock:
            return AttentionBlock(c, cfg.num_heads)

        # Encoder. skip_chs[i] = channels of input_blocks[i]'s output, popped by the decoder.
        self.input_blocks = nn.ModuleList([EmbedSequential(Conv(cfg.in_channels, ch))])
        skip_chs, res_size = [ch], cfg.image_size
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers = [res(ch, mult * cfg.model_channels)]
                ch = mult * cfg.model_channels
                if res_size in cfg.attention_resolutions:
                    layers.append(attn(ch))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_chs.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(EmbedSequential(Downsample(ch)))
                skip_chs.append(ch)
                res_size //= 2

        self.middle_block = EmbedSequential(res(ch, ch), attn(ch), res(ch, ch))

        # Decoder: num_res_blocks + 1 blocks per level, each eating one skip.
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skip_chs.pop(), mult * cfg.model_channels)]
                ch = mult * cfg.model_channels
                if res_size in cfg.attention_resolutions:
                    layers.append(attn(ch))
                if level != 0 and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                    res_size *= 2
                self.output_blocks.append(EmbedSequential(*layers))
        assert not skip_chs

        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero_module(nn.Conv2d(ch, cfg.in_channels, 3, padding=1)))

    def embed(self, noise_labels: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Conditioning vector emb [B, 4*model_channels] from validated labels."""
        return self.cond_embed(noise_labels, class_labels)

    def forward(
        self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        cfg = self.config
        down = 2 ** (len(cfg.channel_mult) - 1)
        if x.ndim == 4 and (x.shape[-1] % down or x.shape[-2] % down):
            raise ValueError(f"H and W must be divisible by {down}, got {tuple(x.shape)}")
        if x.ndim == 4 and x.shape[-2:] != (cfg.image_size, cfg.image_size):
            raise ValueError(f"UNet was built for {cfg.image_size}x{cfg.image_size} images, got {tuple(x.shape)}")
        noise_labels, class_labels = check_inputs(x, noise_labels, class_labels, cfg.in_channels, cfg.num_classes)
        emb = self.embed(noise_labels, class_labels)  # [B, E]
        h, hs = x, []
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)  # [B, C, H, W]
