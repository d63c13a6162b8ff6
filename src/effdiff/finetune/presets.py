"""Named fine-tuning recipes (``effdiff train --preset NAME``): LoRA and full fine-tuning of each
zoo backbone to thick-stroke digits, and the control modules on Sobel edge maps (the UNet: ControlNet,
ControlNet-XS, T2I-Adapter; the DiT: ControlNet, PixArt-δ's copy of the first half of the blocks).

Sized for one CPU thread: 400 steps at batch 32 take a few minutes each (MNIST: 300 steps, the
pixel UNet at batch 16; the latent DiT trains on mnist-ae latents, its control on edge maps resized to 7x7).
"""
from __future__ import annotations

from dataclasses import replace

from .trainer import FinetuneConfig

_COMMON = dict(steps=400, batch_size=32, warmup=40, ckpt_every=50, seed=0)


def _presets() -> dict[str, FinetuneConfig]:
    out = {}
    for base in ("digits-unet", "digits-dit"):
        out[f"{base}-lora-thick"] = FinetuneConfig(name=f"{base}-lora-thick", base=base, method="lora",
                                                   method_args={"rank": 4}, domain="thick", lr=1e-3, **_COMMON)
        out[f"{base}-full-thick"] = FinetuneConfig(name=f"{base}-full-thick", base=base, method="full",
                                                   domain="thick", lr=2e-4, **_COMMON)
    # the same LoRA trained 3x longer: does rank 4 (8% of the parameters) reach the 400-step full fine-tune?
    out["digits-unet-lora-thick-long"] = replace(out["digits-unet-lora-thick"], name="digits-unet-lora-thick-long",
                                                 steps=1200, warmup=120)
    for kind in ("controlnet", "controlnet-xs", "t2i-adapter"):
        out[f"digits-unet-{kind}-edges"] = FinetuneConfig(name=f"digits-unet-{kind}-edges", base="digits-unet",
                                                          method=kind, condition="edges", lr=1e-3, **_COMMON)
    # the same recipe on the DiT: "controlnet" builds controlnet_dit.ControlNetDiT there
    out["digits-dit-controlnet-edges"] = FinetuneConfig(name="digits-dit-controlnet-edges", base="digits-dit",
                                                        method="controlnet", condition="edges", lr=1e-3, **_COMMON)
    # MNIST: one LoRA and one control model per backbone, 300 steps. The pixel UNet (28x28, ~12x the positions of
    # a digits image) at batch 16; the latent DiT (mnist-ae's 7x7x4 latents) at batch 32.
    pixel, latent = dict(_COMMON, steps=300, warmup=30, batch_size=16), dict(_COMMON, steps=300, warmup=30)
    for base, common in (("mnist-unet", pixel), ("mnist-ldm-dit", latent)):
        out[f"{base}-lora-thick"] = FinetuneConfig(name=f"{base}-lora-thick", base=base, method="lora",
                                                   method_args={"rank": 4}, domain="thick", lr=1e-3, **common)
    out["mnist-unet-controlnet-xs-edges"] = FinetuneConfig(name="mnist-unet-controlnet-xs-edges", base="mnist-unet",
                                                           method="controlnet-xs", condition="edges", lr=1e-3, **pixel)
    # the latent DiT: the edge map of the 28x28 image, area-resized to the 7x7 latent grid
    out["mnist-ldm-dit-controlnet-edges"] = FinetuneConfig(name="mnist-ldm-dit-controlnet-edges",
                                                           base="mnist-ldm-dit", method="controlnet",
                                                           condition="edges", lr=1e-3, **latent)
    return out


PRESETS: dict[str, FinetuneConfig] = _presets()


def preset(name: str, **overrides) -> FinetuneConfig:
    """A fine-tuning preset's config with fields overridden (``preset(name, steps=20, seed=1)``)."""
    if name not in PRESETS:
        raise KeyError(f"unknown fine-tuning preset {name!r}; known: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)
