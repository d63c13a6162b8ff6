"""The video training recipes: the ``task="video"`` entries of ``effdiff.training.presets.PRESETS``
(``effdiff train --preset video-dit`` or ``python -m effdiff.video.train --preset video-dit``)."""
from __future__ import annotations

from dataclasses import replace

from ..training.presets import PRESETS as _ALL
from ..training.trainer import TrainConfig

PRESETS: dict[str, TrainConfig] = {k: v for k, v in _ALL.items() if v.task == "video"}
# temporal adapters (SimDA / ED-T2V) on the frozen zoo image DiT mnist-ldm-dit (same autoencoder, 8x8 frame
# latents instead of 7x7): only the adapters train (11.7% of the parameters); full-sequence form only.
PRESETS["video-adapter"] = TrainConfig(
    name="video-adapter", task="video", arch="video-adapter", data="moving-digits-latent",
    model={"image": "mnist-ldm-dit", "frame_size": 8, "bottleneck": 32, "heads": 2, "in_channels": 4,
           "num_classes": 10, "frames": 16, "block_frames": 16},
    process={"name": "flow"}, prediction="velocity",
    loss={"p_mean": 0.0, "p_std": 1.0, "block_fraction": 0.0, "frames": 16},
    steps=2000, batch_size=8, lr=1e-3, warmup=50, ema_decay=0.99, p_uncond=0.1, seed=0, ckpt_every=100)


def preset(name: str, **overrides) -> TrainConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown video preset {name!r}; known: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)
