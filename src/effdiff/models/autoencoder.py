"""A small KL autoencoder for latent diffusion (Rombach et al. 2022, "High-Resolution Image
Synthesis with Latent Diffusion Models", the KL-regularised first stage; no GAN, no LPIPS).

    ae = build("autoencoder", {"image_size": 28, "latent_channels": 4})
    mean, logvar = ae.encode(x)          # x [B, 1, 28, 28] -> [B, 4, 7, 7] each
    x_rec = ae.decode(mean)              # [B, 4, 7, 7] -> [B, 1, 28, 28]

The encoder is conv -> (ResBlock [-> strided conv]) per level -> conv to 2C channels (mean, log
variance of a diagonal Gaussian posterior); the decoder mirrors it with nearest x2 upsampling.
`kl(mean, logvar)` is KL(q(z|x) || N(0, I)) per sample. Latents are unit-less: a diffusion model
trains on ``scale * z`` with ``scale = 1 / std(z)`` measured on training data (effdiff.latent).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import group_norm


@dataclass
class AutoencoderConfig:
    in_channels: int = 1
    image_size: int = 28
    channels: tuple[int, ...] = (16, 32, 64)   # per level; each level after the first halves H and W
    latent_channels: int = 4
    num_res_blocks: int = 1

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)   # JSON lists -> tuple (exact round-trip)
        if not self.channels or min(self.channels) < 1 or self.latent_channels < 1 or self.num_res_blocks < 1:
            raise ValueError("AutoencoderConfig needs channels non-empty and positive, latent_channels >= 1, "
                             "num_res_blocks >= 1")
        if self.image_size % self.downsample:
            raise ValueError(f"image_size {self.image_size} is not divisible by 2**(levels-1) = {self.downsample}")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channels) - 1)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.downsample

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.latent_channels, self.latent_size, self.latent_size


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with a residual (1x1 conv when the width changes)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(group_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
                                  group_norm(cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv: [B, Cin, H, W] -> [B, Cout, 2H, 2W]."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Autoencoder(nn.Module):
    """KL autoencoder: ``encode(x) -> (mean, logvar)``, ``decode(z) -> x``, ``forward(x) -> (x_rec, mean, logvar)``."""

    def __init__(self, config: AutoencoderConfig | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else AutoencoderConfig()
        ch, C = cfg.channels, cfg.latent_channels
        enc: list[nn.Module] = [nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)]
        for i, c in enumerate(ch):
            cin = ch[i - 1] if i else ch[0]
            if i:
                enc.append(nn.Conv2d(cin, c, 3, stride=2, padding=1))        # H -> H/2
            enc += [ResBlock(c, c) for _ in range(cfg.num_res_blocks)]
        enc += [group_norm(ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], 2 * C, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)                                  # [B, 1, H, W] -> [B, 2C, h, w]
        dec: list[nn.Module] = [nn.Conv2d(C, ch[-1], 3, padding=1)]
        for i in reversed(range(len(ch))):
            dec += [ResBlock(ch[i], ch[i]) for _ in range(cfg.num_res_blocks)]
            if i:
                dec.append(Upsample(ch[i], ch[i - 1]))                     # h -> 2h
        dec += [group_norm(ch[0]), nn.SiLU(), nn.Conv2d(ch[0], cfg.in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)                                  # [B, C, h, w] -> [B, 1, H, W]

    def _check(self, x: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
            raise ValueError(f"autoencoder {what} needs [B, {', '.join(map(str, shape))}], got {tuple(x.shape)}")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior q(z|x) = N(mean, exp(logvar)): x [B, in, H, W] -> mean, logvar [B, C, h, w]."""
        cfg = self.config
        self._check(x, (cfg.in_channels, cfg.image_size, cfg.image_size), "encode")
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)            # as LDM's DiagonalGaussianDistribution

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, C, h, w] (unscaled) -> x [B, in, H, W]."""
        self._check(z, self.config.latent_shape, "decode")
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Reconstruct through a posterior sample: (x_rec, mean, logvar)."""
        mean, logvar = self.encode(x)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return self.decode(mean + (0.5 * logvar).exp() * eps), mean, logvar


def kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over each sample's latent: [B]."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)
