"""What ``effdiff train --preset`` and ``effdiff sample --lora FILE[:w] --control IMAGE`` call.

    den = sample_denoiser(den, loras=["thick.safetensors:0.8"], control="digit.png",
                          control_model="runs/xs/model", condition_name="edges", n=100)
"""
from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .. import checkpoint as ckpt
from .conditions import condition
from .control import Controlled, controlled_denoiser
from .files import load_lora
from .methods import load_control


MAX_LORA_WEIGHT = 1_000.0     # the bound on guidance scales: beyond it the samples are noise
MAX_IMAGE_PIXELS = 4096 * 4096   # a control image is resized to the model's few dozen pixels


def parse_lora(spec: str) -> tuple[Path, float]:
    """``FILE[:weight]`` -> (path stem, weight); the weight defaults to 1 and must be finite."""
    path, sep, w = spec.rpartition(":") if ":" in spec else (spec, "", "")
    try:
        weight = float(w) if sep else 1.0
    except ValueError:
        raise ValueError(f"--lora {spec!r}: the weight after ':' must be a number") from None
    if not (math.isfinite(weight) and abs(weight) <= MAX_LORA_WEIGHT):
        raise ValueError(f"--lora {spec!r}: the weight must be finite and in [-{MAX_LORA_WEIGHT:g}, "
                         f"{MAX_LORA_WEIGHT:g}], got {w}")
    st, _ = ckpt.files(path if sep else spec)
    if not st.exists():
        raise FileNotFoundError(f"--lora {spec!r}: no {st}")
    return ckpt.stem(st), weight


def read_image(path, size: int, channels: int = 1) -> torch.Tensor:
    """A PNG/JPEG as [1, C, size, size] in [-1, 1] (grey for one channel; white ink on black expected)."""
    from PIL import Image
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--control {path!r}: no such image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise ValueError(f"{img.width}x{img.height} pixels, more than {MAX_IMAGE_PIXELS} allowed")
                img = img.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ValueError(f"--control {str(path)!r}: not a usable image ({type(e).__name__}: {e})") from None
    a = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    t = torch.from_numpy(a)
    return (t[None] if channels == 1 else t.permute(2, 0, 1))[None]


@contextmanager
def _cli_hint():
    """A file trained on other base weights: the refusal names the command-line switch too."""
    try:
        yield
    except ckpt.CheckpointError as e:
        if "check_base=False" not in str(e):
            raise
        raise ckpt.CheckpointError(f"{e} (effdiff sample: --no-check-base)") from None


def sample_denoiser(den, loras=(), control: str | None = None, control_model: str | None = None,
                    condition_name: str = "edges", n: int = 1, check_base: bool = True):
    """``den`` with LoRA files attached at their weights and, with ``control``, driven by the control
    model ``control_model`` on ``condition_name`` of the image (the same map for all n samples);
    ``check_base=False`` (``--no-check-base``) attaches adapters trained on other base weights."""
    for spec in loras or ():
        stem, w = parse_lora(spec)
        with _cli_hint():
            load_lora(den, stem, weight=w, check_base=check_base)
    if control is None:
        if control_model is not None:
            raise ValueError("--control-model needs --control IMAGE")
        return den
    if control_model is None:
        raise ValueError("--control IMAGE needs --control-model FILE (a trained control module)")
    with _cli_hint():
        ctl = load_control(den, ckpt.stem(control_model), check_base=check_base)
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
