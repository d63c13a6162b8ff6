"""Named student recipes behind ``effdiff train --preset NAME`` (digits teachers from the zoo).

    python -m effdiff.distill.presets digits-unet-pd --out runs/digits-unet-pd [--resume]

Sizes fit a shared 2-core CPU: a few thousand student steps at batch 64 on one thread.
"""
from __future__ import annotations

import argparse
from typing import Callable

from .loop import DistillConfig, config

PRESETS: dict[str, Callable[[], DistillConfig]] = {}


def preset(fn):
    """Register a preset function under its name with dashes (digits_unet_pd -> digits-unet-pd)."""
    PRESETS[fn.__name__.replace("_", "-")] = fn
    return fn


@preset
def digits_unet_pd() -> DistillConfig:
    """Progressive distillation of digits-unet (VP, eps) 8 -> 1 DDIM steps, student in v."""
    return config("progressive", "digits-unet", {"start_steps": 8, "stage_steps": 100, "prediction": "v"},
                  name="digits-unet-pd", steps=300, batch_size=32, lr=5e-4)


@preset
def digits_dit_pd() -> DistillConfig:
    """Progressive distillation of digits-dit (flow, velocity) 8 -> 1 steps."""
    return config("progressive", "digits-dit", {"start_steps": 8, "stage_steps": 100},
                  name="digits-dit-pd", steps=300, batch_size=32)


@preset
def digits_unet_cd() -> DistillConfig:
    """Consistency distillation of digits-unet: Heun teacher steps, iCT recipe, N 10 -> 40."""
    return config("consistency", "digits-unet", {"n_start": 10, "n_end": 40, "order": 2},
                  name="digits-unet-cd", steps=600, batch_size=32)


@preset
def digits_dit_cd() -> DistillConfig:
    """Consistency distillation of digits-dit: Heun teacher steps, iCT recipe, N 10 -> 40."""
    return config("consistency", "digits-dit", {"n_start": 10, "n_end": 40, "order": 2},
                  name="digits-dit-cd", steps=600, batch_size=32)


@preset
def digits_unet_ct() -> DistillConfig:
    """Consistency training (no teacher calls) of a digits-unet-initialised student (ECT)."""
    return config("consistency", "digits-unet", {"teacher_ode": False, "n_start": 10, "n_end": 80},
                  name="digits-unet-ct", steps=600, batch_size=32)


@preset
def digits_unet_gd() -> DistillConfig:
    """Guidance distillation of digits-unet for w in [1, 4] (one pass instead of two)."""
    return config("guidance", "digits-unet", {"w_min": 1.0, "w_max": 4.0, "default_w": 2.0},
                  name="digits-unet-gd", steps=600, batch_size=32)


@preset
def digits_dit_gd() -> DistillConfig:
    """Guidance distillation of digits-dit for w in [1, 4] at its logit-normal training density."""
    return config("guidance", "digits-dit", {"w_min": 1.0, "w_max": 4.0, "default_w": 2.0, "density": "lognormal",
                                             "density_args": {"p_mean": 0.0, "p_std": 1.0}},
                  name="digits-dit-gd", steps=600, batch_size=32)


@preset
def digits_unet_lcm() -> DistillConfig:
    """LCM-style guided consistency distillation of digits-unet, w in [1, 3], DDIM skipping step 2."""
    return config("consistency", "digits-unet", {"n_start": 20, "n_end": 40, "order": 1, "skip": 2,
                                                 "guidance": (1.0, 3.0)},
                  name="digits-unet-lcm", steps=600, batch_size=32)


@preset
def digits_dit_reflow() -> DistillConfig:
    """2-rectified flow of digits-dit on 2048 teacher pairs (generated first, resumable)."""
    return config("reflow", "digits-dit", {"pairs": "runs/pairs-digits-dit", "pairs_n": 2048,
                                           "density": "lognormal", "density_args": {"p_mean": 0.0, "p_std": 1.0}},
                  name="digits-dit-reflow", steps=600, batch_size=32)


def get(name: str, **overrides) -> DistillConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown distillation preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    import dataclasses
    return dataclasses.replace(PRESETS[name](), **overrides)


def main(argv=None) -> None:
    """Train a preset (what ``effdiff train --preset`` runs for a distillation preset)."""
    import torch
    from .loop import distill
    p = argparse.ArgumentParser(prog="python -m effdiff.distill.presets")
    p.add_argument("preset", choices=sorted(PRESETS))
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(distill(get(a.preset), a.out, resume=a.resume, overwrite=a.overwrite))


if __name__ == "__main__":
    main()
