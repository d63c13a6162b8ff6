"""Named video training recipes (``python -m effdiff.video.train --preset NAME``)."""
from __future__ import annotations

from dataclasses import replace

from ..training.trainer import TrainConfig

PRESETS: dict[str, TrainConfig] = {
    # latent video DiT on moving digits: 16 frames of mnist-ae latents (4x8x8 per 32x32 frame), patch 2
    # -> 16 tokens per frame, 256 per clip; full 3-D attention, RoPE on time; half the steps in Block
    # Diffusion's form (blocks of 4 frames, a window of 3 earlier blocks), half full-sequence.
    "video-dit": TrainConfig(
        name="video-dit", task="video", arch="video-dit", data="moving-digits-latent",
        model={"in_channels": 4, "frame_size": 8, "patch_size": 2, "hidden_size": 64, "depth": 4, "num_heads": 4,
               "mlp_ratio": 2.0, "num_classes": 10, "frames": 16, "block_frames": 4, "window_blocks": 3},
        process={"name": "flow"}, prediction="velocity",
        loss={"p_mean": 0.0, "p_std": 1.0, "block_fraction": 0.5, "frames": 16},
        steps=1100, batch_size=16, lr=1e-3, warmup=50, ema_decay=0.995, p_uncond=0.1, seed=0, ckpt_every=100),
}


def preset(name: str, **overrides) -> TrainConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown video preset {name!r}; known: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)
