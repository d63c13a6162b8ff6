"""Per-frame latents of moving-digit clips through the zoo's ``mnist-ae`` (Rombach et al. 2022).

The autoencoder is fully convolutional, so its encoder and decoder run unchanged on a 32x32 canvas:
a frame [1, 32, 32] <-> a latent [4, 8, 8] (the 28x28 images it was trained on give 7x7). Latents are
scaled by the autoencoder's recorded ``scale`` (1/std on MNIST train), as ``effdiff.latent`` does.

    codec = FrameCodec.zoo()                 # mnist-ae
    z = codec.encode(x)                      # [B, 1, T, 32, 32] -> [B, 4, T, 8, 8]
    x = codec.decode(z)                      # and back
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from .data import clips_of, frames_of, moving_digits

AUTOENCODER = "mnist-ae"
BATCH = 64


class FrameCodec:
    """Encode/decode video frame by frame with a KL autoencoder's convolutional encoder/decoder."""

    def __init__(self, ae, scale: float, name: str = AUTOENCODER, sha256: str | None = None):
        self.ae, self.scale, self.name, self.sha256 = ae.eval(), float(scale), name, sha256

    @classmethod
    def zoo(cls, name: str = AUTOENCODER) -> "FrameCodec":
        from ..latent.zoo import autoencoder
        ae, scale, sha = autoencoder(name, "video latents")
        return cls(ae, scale, name, sha)

    @property
    def channels(self) -> int:
        return self.ae.config.latent_channels

    @property
    def downsample(self) -> int:
        return self.ae.config.downsample

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, T, H, W] in [-1, 1] -> scaled posterior means [B, c, T, H/d, W/d]."""
        f = frames_of(x)
        z = torch.cat([self.ae.encoder(f[i:i + BATCH]).chunk(2, 1)[0] for i in range(0, len(f), BATCH)])
        return clips_of(z * self.scale, x.shape[2])

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """[B, c, T, h, w] scaled latents -> frames [B, 1, T, h*d, w*d]."""
        f = frames_of(z) / self.scale
        return clips_of(torch.cat([self.ae.decoder(c)[:n] for c, n in chunks(f)]), z.shape[2])


def chunks(f: torch.Tensor):
    """(chunk, frames to keep) of ``BATCH`` frames: a working set that stays in cache (chunks of 512 frames decode
    1,024 frames 2x slower on the bench machine: docs/bench/video/stream-wall-defaults/micro.py). A convolution over
    one frame rounds differently from one over several, so a lone frame is decoded beside a copy of itself and a lone
    last frame joins the chunk before it: the frames do not depend on how many are decoded together."""
    parts = list(f.split(BATCH))
    if len(parts) > 1 and len(parts[-1]) == 1:
        parts[-2:] = [torch.cat(parts[-2:])]
    return [(torch.cat([c, c]) if len(c) == 1 else c, len(c)) for c in parts]


def cache_dir() -> Path:
    return Path(os.environ.get("EFFDIFF_VIDEO_CACHE", "/tmp/effdiff-video-cache"))


def latent_clips(split: str = "train", n: int = 4000, frames: int = 20, seed: int = 0,
                 codec: FrameCodec | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoded moving-digit clips (z [n, c, frames, 8, 8], labels [n]), cached on disk by their recipe
    and the autoencoder's weights (safetensors; encoding 80k frames takes minutes on one thread)."""
    from safetensors.torch import load_file, save_file
    codec = codec or FrameCodec.zoo()
    key = hashlib.sha256(f"{split}-{n}-{frames}-{seed}-{codec.name}-{codec.sha256}-{codec.scale}".encode()).hexdigest()[:16]
    path = cache_dir() / f"moving-digits-{split}-{key}.safetensors"
    if path.is_file():
        t = load_file(path)
        return t["z"], t["y"]
    x, y = moving_digits(split, n, frames, seed=seed)
    z = codec.encode(x).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"z": z, "y": y}, str(tmp))
    os.replace(tmp, path)
    return z, y
