"""Temporal adapters on a frozen image DiT (SimDA, Xing et al. 2024; ED-T2V, Liu et al. 2023):
every spatial block of a trained image DiT runs frame by frame, unchanged and frozen; after it, a
small temporal adapter (bottleneck down-projection, attention over frames for each spatial token
with RoPE on time, up-projection initialised to zero) mixes information across frames. At
initialisation the adapted model is exactly the image model applied to each frame.

    net = AdaptedImageDiT(image_dit, bottleneck=32)     # image_dit: models.dit.DiT, frozen here
    net = AdaptedVideoDiT(AdaptedVideoConfig(image="mnist-ldm-dit"))   # arch "video-adapter": a zoo image DiT
    net(x [B, C, T, H, W], noise_labels [B], class_labels [B])     # the usual network contract
    trainable_fraction(net)                                            # adapters / all parameters
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import rope

Tensor = torch.Tensor


class TemporalAdapter(nn.Module):
    """h [B*T, N, D] -> h + up(attention over T (per token) of down(norm(h))); ``up`` starts at zero."""

    def __init__(self, dim: int, bottleneck: int = 32, heads: int = 2):
        super().__init__()
        if bottleneck % heads or (bottleneck // heads) % 2:
            raise ValueError(f"bottleneck {bottleneck} must split into {heads} heads of even width")
        self.heads = heads
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.down = nn.Linear(dim, 3 * bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: Tensor, frames: int) -> Tensor:
        BT, N, D = h.shape
        B = BT // frames
        z = self.down(self.norm(h)).reshape(B, frames, N, 3, self.heads, -1)       # [B, T, N, 3, H, d]
        q, k, v = z.permute(3, 0, 2, 4, 1, 5).reshape(3, B * N, self.heads, frames, -1)  # [B*N, H, T, d]
        t = torch.arange(frames, device=h.device)
        out = F.scaled_dot_product_attention(rope(q, t, 1), rope(k, t, 1), v)      # [B*N, H, T, d]
        out = out.reshape(B, N, self.heads, frames, -1).permute(0, 3, 1, 2, 4).reshape(BT, N, -1)
        return h + self.up(out)


class AdaptedImageDiT(nn.Module):
    """A frozen ``models.dit.DiT`` run per frame with a ``TemporalAdapter`` after each block."""

    def __init__(self, image_dit, bottleneck: int = 32, heads: int = 2):
        super().__init__()
        self.image = image_dit.requires_grad_(False).eval()
        D = image_dit.config.hidden_size
        self.adapters = nn.ModuleList(TemporalAdapter(D, bottleneck, heads) for _ in image_dit.blocks)

    def train(self, mode: bool = True):
        super().train(mode)
        self.image.eval()                      # frozen: no dropout/normalisation updates either
        return self

    def forward(self, x: Tensor, noise_labels, class_labels: Tensor | None = None) -> Tensor:
        """x [B, C, T, H, W] -> [B, C, T, H, W]; one noise label and class label per clip."""
        B, C, T, H, W = x.shape
        img = self.image
        f = x.transpose(1, 2).reshape(B * T, C, H, W)
        n = torch.as_tensor(noise_labels, dtype=x.dtype, device=x.device).reshape(-1).expand(B)
        c = img.embed(n.repeat_interleave(T), None if class_labels is None else class_labels.repeat_interleave(T))
        h = img.patchify(f)
        for block, adapter in zip(img.blocks, self.adapters):
            h = adapter(block(h, c, None), T)
        out = img.unpatchify(img.final_layer(h, c))                                    # [B*T, C', H, W]
        return out.reshape(B, T, -1, H, W).transpose(1, 2)


def trainable_fraction(net: nn.Module) -> float:
    """Trainable parameters / all parameters."""
    total = sum(p.numel() for p in net.parameters())
    return sum(p.numel() for p in net.parameters() if p.requires_grad) / max(total, 1)


@dataclass
class AdaptedVideoConfig:
    """Arch ``video-adapter``: the zoo image DiT ``image`` on ``frame_size`` latents, adapters of ``bottleneck``."""
    image: str = "mnist-ldm-dit"
    frame_size: int = 8          # latent frame side (the image DiT's sin-cos positions are recomputed for it)
    bottleneck: int = 32
    heads: int = 2
    in_channels: int = 4
    num_classes: int = 10
    frames: int = 16
    block_frames: int = 16       # no Block Diffusion form: the adapters attend over the whole clip


class AdaptedVideoDiT(AdaptedImageDiT):
    """A zoo image DiT (SHA-256 verified, frozen) with temporal adapters, buildable by name
    (``models.build("video-adapter", {...})``) so the ordinary trainer, export and zoo kinds handle it."""

    def __init__(self, config: AdaptedVideoConfig | None = None):
        from .. import assets, checkpoint as ckpt
        from ..models import build
        self.config = cfg = config if config is not None else AdaptedVideoConfig()
        tensors, meta = ckpt.load(assets.path(cfg.image), require_sha256=True)
        image = build(meta["arch"], {**meta["model"], "image_size": cfg.frame_size})
        ckpt.load_state(image, tensors, "", where=f"zoo model {cfg.image!r}")
        if image.config.in_channels != cfg.in_channels or image.config.num_classes != cfg.num_classes:
            raise ValueError(f"{cfg.image}: {image.config.in_channels} channels / {image.config.num_classes} classes, "
                             f"the video config asks for {cfg.in_channels} / {cfg.num_classes}")
        super().__init__(image, cfg.bottleneck, cfg.heads)
        self.config = cfg
