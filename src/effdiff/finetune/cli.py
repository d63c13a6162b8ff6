"""What ``effdiff train --preset`` and ``effdiff sample --lora FILE[:w] --control IMAGE`` call.

    den = sample_denoiser(den, loras=["thick.safetensors:0.8"], control="digit.png",
                          control_model="runs/xs/model", condition_name="edges", n=100)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .conditions import condition
from .control import Controlled, controlled_denoiser
from .files import load_lora
from .trainer import load


def parse_lora(spec: str) -> tuple[Path, float]:
    """``FILE[:weight]`` -> (path stem, weight); the weight defaults to 1."""
    path, sep, w = spec.rpartition(":") if ":" in spec else (spec, "", "")
    try:
        weight = float(w) if sep else 1.0
    except ValueError:
        raise ValueError(f"--lora {spec!r}: the weight after ':' must be a number") from None
    stem = Path(path if sep else spec)
    stem = stem.with_suffix("") if stem.suffix in (".safetensors", ".json") else stem
    if not stem.with_suffix(".safetensors").exists():
        raise FileNotFoundError(f"--lora {spec!r}: no {stem.with_suffix('.safetensors')}")
    return stem, weight


def read_image(path, size: int, channels: int = 1) -> torch.Tensor:
    """A PNG/JPEG as [1, C, size, size] in [-1, 1] (grey for one channel; white ink on black expected)."""
    from PIL import Image
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--control {path!r}: no such image")
    img = Image.open(p).convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    t = torch.from_numpy(a)
    return (t[None] if channels == 1 else t.permute(2, 0, 1))[None]


def sample_denoiser(den, loras=(), control: str | None = None, control_model: str | None = None,
                    condition_name: str = "edges", n: int = 1):
    """``den`` with LoRA files attached at their weights and, with ``control``, driven by the control
    model ``control_model`` on ``condition_name`` of the image (the same map for all n samples)."""
    for spec in loras or ():
        stem, w = parse_lora(spec)
        load_lora(den, stem, name=stem.name, weight=w)
    if control is None:
        if control_model is not None:
            raise ValueError("--control-model needs --control IMAGE")
        return den
    if control_model is None:
        raise ValueError("--control IMAGE needs --control-model FILE (a trained control module)")
    ctl = load(den, Path(control_model).with_suffix(""))
    if not isinstance(ctl, Controlled):
        raise ValueError(f"{control_model} is not a control module")
    m = den.meta["model"]
    ch, size = den.image_shape[:2] if hasattr(den, "image_shape") else (m.get("in_channels", 1), m["image_size"])
    hint = condition(condition_name, read_image(control, size, ch))   # latent models: controlled_denoiser resizes it
    return controlled_denoiser(den, ctl, hint.expand(n, -1, -1, -1).contiguous())


def train_preset(name: str, out, resume: bool = False, overwrite: bool = False, progress: bool = True, **overrides):
    """Train fine-tuning preset ``name`` into ``out`` (fields overridden: steps, seed, batch_size)."""
    from .presets import preset
    from .trainer import finetune
    return finetune(preset(name, **{k: v for k, v in overrides.items() if v is not None}), out, resume=resume,
                    overwrite=overwrite, progress=progress)
