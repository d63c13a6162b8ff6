"""``LatentDenoiser``: a diffusion model trained on an autoencoder's scaled latents, seen as an
ordinary denoiser in latent space that can also decode.

    den = ed.zoo.load("mnist-ldm-dit")              # a LatentDenoiser
    z = ed.sample(den, noise_z, sig, solver="dpmpp-2m", cond=labels)   # [B, 4, 7, 7], latent space
    x = den.decode(z)                               # [B, 1, 28, 28] images (cost: one decoder pass)

``den(z, sigma, cond)`` is the wrapped denoiser's call, so every solver, guidance, cache, quantizer
and distiller runs unchanged: attributes it does not hold itself (``net``, ``process``,
``prediction``, ``cond_classes``, ``labels`` ...) are the wrapped denoiser's, and assigning ``net``
rebuilds the wrapped denoiser around the new network (``distributed.net.with_net``). Hooks find the
diffusion network through ``.net``; the autoencoder is separate (``.autoencoder``) and is never
hooked, cached or quantized. ``meta["model"]`` is the latent network's config (image_size and
in_channels of the latent), so noise is drawn in latent space; ``meta["latent"]`` names the
autoencoder, the scale and the image dataset. Samplers that want images call ``images(den, z)``,
which decodes (and counts the decode) for latent models and is the identity otherwise.
"""
from __future__ import annotations

import torch
from torch import nn

from .encode import decode as _decode, encode as _encode


class LatentDenoiser(nn.Module):
    """``D(z, sigma, cond) -> z0`` in the scaled latent space of ``autoencoder``, plus
    ``decode(z) = autoencoder.decode(z / scale)`` and ``encode(x) = scale * E[z|x]``."""

    def __init__(self, denoiser: nn.Module, autoencoder: nn.Module, scale: float, meta: dict | None = None):
        super().__init__()
        if not (isinstance(scale, (int, float)) and scale > 0 and scale == scale and scale != float("inf")):
            raise ValueError(f"latent scale must be a positive finite number, got {scale!r}")
        self.denoiser = denoiser
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.scale = float(scale)
        self.decodes = 0               # images decoded so far (decode cost is real sampling cost)
        if meta is not None:
            self.meta = meta

    def forward(self, z: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        return self.denoiser(z, sigma, cond)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)          # own parameters, buffers and submodules
        except AttributeError:
            if name in ("denoiser", "_modules") or "denoiser" not in self.__dict__.get("_modules", {}):
                raise
            return getattr(self._modules["denoiser"], name)

    def __setattr__(self, name: str, value) -> None:
        if name == "net" and "denoiser" in self.__dict__.get("_modules", {}):
            from ..distributed.net import with_net       # the wrapped denoiser's own copy, new network
            name, value = "denoiser", with_net(self._modules["denoiser"], value)
        super().__setattr__(name, value)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return tuple(self.autoencoder.config.latent_shape)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c = self.autoencoder.config
        return c.in_channels, c.image_size, c.image_size

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents [B, c, h, w] -> images [B, C, H, W] (float32, the decoder's range)."""
        self.decodes += len(z)
        return _decode(self.autoencoder, z.float(), self.scale)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] -> scaled latents ``scale * E[z|x]`` (what the model was trained on)."""
        return _encode(self.autoencoder, x.float(), self.scale)


def latent_of(den) -> LatentDenoiser | None:
    """The LatentDenoiser inside ``den`` (through guidance / technique wrappers' ``.denoiser``), or None."""
    seen = set()
    while den is not None and id(den) not in seen:
        if isinstance(den, LatentDenoiser):
            return den
        seen.add(id(den))
        den = getattr(den, "denoiser", None)
    return None


def images(den, x):
    """What a sampler hands to metrics and grids: ``den.decode(x)`` for a latent model, ``x`` otherwise.
    A ``SampleResult`` comes back as a SampleResult with decoded ``x``."""
    lat = latent_of(den)
    if lat is None:
        return x
    from ..sampling import SampleResult
    if isinstance(x, SampleResult):
        return SampleResult(lat.decode(x.x), x.nfe, x.steps, x.stats)
    return lat.decode(x)


def decode_macs(den, batch: int = 2) -> float:
    """MACs per sample of one decode (0 for a pixel-space model): counted once per sample."""
    lat = latent_of(den)
    if lat is None:
        return 0.0
    from ..metrics import macs_per_sample
    z = torch.zeros(batch, *lat.latent_shape)
    return macs_per_sample(lambda z: lat.autoencoder.decode(z), z)
