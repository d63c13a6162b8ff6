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
    return config("progressive", "digits-unet", {"start_steps": 8, "stage_steps": 250, "prediction": "v"},
                  name="digits-unet-pd", steps=750, batch_size=32)


@preset
def digits_dit_pd() -> DistillConfig:
    """Progressive distillation of digits-dit (flow, velocity) 8 -> 1 steps."""
    return config("progressive", "digits-dit", {"start_steps": 8, "stage_steps": 250},
                  name="digits-dit-pd", steps=750, batch_size=32)


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
