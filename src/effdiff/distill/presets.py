"""Named student recipes behind ``effdiff train --preset NAME`` (digits teachers from the zoo).

    python -m effdiff.distill.presets digits-unet-pd --out runs/digits-unet-pd [--resume]

Sizes fit a shared 2-core CPU: a few thousand student steps at batch 64 on one thread.
"""
from __future__ import annotations

import argparse
from typing import Callable

from .loop import DistillConfig, config

PRESETS: dict[str, Callable[[], DistillConfig]] = {}


DIT_DENSITY = {"density": "lognormal", "density_args": {"p_mean": 0.0, "p_std": 1.0}}   # digits-dit's training density
TEACHERS = ("digits-unet", "digits-dit")


def _both(suffix: str, method: str, args: dict, doc: str, extra: dict | None = None, **fields) -> None:
    """Register ``<teacher>-SUFFIX`` for both zoo teachers; ``extra``: teacher -> args added;
    "{teacher}" in a string arg is replaced by the teacher's name."""
    for teacher in TEACHERS:
        name = f"{teacher}-{suffix}"
        a = {k: v.format(teacher=teacher) if isinstance(v, str) else v
             for k, v in {**args, **(extra or {}).get(teacher, {})}.items()}

        def fn(teacher=teacher, a=a, name=name) -> DistillConfig:
            return config(method, teacher, a, name=name, **fields)
        fn.__doc__ = f"{doc} ({teacher})."
        PRESETS[name] = fn


# eps-prediction cannot take one step (x0 = x - σ ε amplifies its error σ_max times): the UNet student in v
_both("pd", "progressive", {"start_steps": 8, "stage_steps": 100}, "Progressive distillation 8 -> 1 DDIM steps",
      {"digits-unet": {"prediction": "v"}}, steps=300, batch_size=32, lr=5e-4)
_both("cd", "consistency", {"n_start": 10, "n_end": 40, "order": 2},
      "Consistency distillation, Heun teacher steps, iCT recipe, N 10 -> 40", steps=600, batch_size=32)
_both("ct", "consistency", {"teacher_ode": False, "n_start": 10, "n_end": 80},
      "Consistency training (no teacher calls) from the teacher's weights (ECT)", steps=600, batch_size=32)
_both("gd", "guidance", {"w_min": 1.0, "w_max": 4.0, "default_w": 2.0},
      "Guidance distillation for w in [1, 4]: one pass instead of two", {"digits-dit": DIT_DENSITY},
      steps=600, batch_size=32)
_both("lcm", "consistency", {"n_start": 20, "n_end": 40, "order": 1, "skip": 2, "guidance": (1.0, 3.0)},
      "LCM-style guided consistency distillation, w in [1, 3], DDIM skipping step 2", steps=600, batch_size=32)
_both("reflow", "reflow", {"pairs_n": 2048},
      "2-rectified flow on 2048 teacher pairs (generated first into OUT/pairs, resumable)", {"digits-dit": DIT_DENSITY},
      steps=600, batch_size=32)
_both("dmd", "dmd", {"fake_updates": 5},
      "DMD: one-step generator, fake score trained online (5 updates per generator step), no CFG",
      {"digits-dit": DIT_DENSITY,
       "digits-unet": {"prediction": "v", "regression": 0.25, "pairs_n": 2048}},
      steps=1600, batch_size=32, lr=2e-4, warmup=20, ema_decay=0.99, p_uncond=0.0, ckpt_every=50)

PRESETS["digits-dit-dmd-4step"] = lambda: config(
    "dmd", "digits-dit", {"fake_updates": 5, "steps": 4, **DIT_DENSITY}, name="digits-dit-dmd-4step", steps=800,
    batch_size=32, lr=2e-4, warmup=20, ema_decay=0.99, p_uncond=0.0, ckpt_every=50)
PRESETS["digits-dit-dmd-4step"].__doc__ = "DMD2 with backward simulation: a 4-step generator (digits-dit)."


KD_PAIRS = {"pairs_solver": "heun", "pairs_schedule": "karras", "pairs_steps": 40}
# the plan reference's samples (heun/karras/40), in runs/<teacher>-kd-pairs, shared by a teacher's KD presets


def _kd(teacher: str, steps: int, iters: int, init: str, n: int, name: str = "", loss: str = "l2",
        lr: float = 1e-4) -> Callable[[], DistillConfig]:
    def fn() -> DistillConfig:      # "loss" only when not the default: l2 presets keep the args their cards record
        return config("kd", teacher, {"steps": steps, "init": init, "pairs": f"runs/{teacher}-kd-pairs", "pairs_n": n,
                                      **({"loss": loss} if loss != "l2" else {}), **KD_PAIRS},
                      name=name or f"{teacher}-kd-{steps}step", steps=iters, batch_size=64, lr=lr, warmup=100,
                      p_uncond=0.0, ckpt_every=250)
    fn.__doc__ = (f"Knowledge distillation of the sampler: {init or teacher}'s {steps}-step solve, unrolled, regressed "
                  f"({loss}) onto {teacher}'s heun/karras/40 samples from the same noise ({n:,} pairs in "
                  f"runs/{teacher}-kd-pairs, generated first, resumable).")
    return fn


# digits-unet: 16,384 pairs overfit (1 step: paired MSE 0.008 on them, 0.015 on new noise), hence 32,768
PRESETS["digits-unet-kd-1step"] = _kd("digits-unet", 1, 6000, "digits-unet-pd-1step", 32768)
PRESETS["digits-unet-kd-2step"] = _kd("digits-unet", 2, 4000, "digits-unet-pd-2step", 32768)
PRESETS["digits-dit-kd-1step"] = _kd("digits-dit", 1, 4000, "digits-dit-dmd-1step", 16384)
# digits-unet's 2-step KD student continued: 4,000 steps with the pseudo-Huber loss on the same 32,768 pairs, then
# 6,000 on 65,536 (paired MSE on new noise 0.0074 -> 0.0064 -> 0.0053; FD change on student-selection 3412-3423
# +3.0% -> +2.9% -> +2.5%; docs/bench/plan/students/kd-dev/). Run the first into runs/digits-unet-kd-2step-ph.
PRESETS["digits-unet-kd-2step-ph"] = _kd("digits-unet", 2, 4000, "digits-unet-kd-2step", 32768,
                                         name="digits-unet-kd-2step-ph", loss="pseudo-huber", lr=5e-5)
PRESETS["digits-unet-kd-2step-long"] = _kd("digits-unet", 2, 6000, "runs/digits-unet-kd-2step-ph/model", 65536,
                                           name="digits-unet-kd-2step-long", loss="pseudo-huber", lr=5e-5)


def _unet_pd_long() -> DistillConfig:
    """Progressive distillation 8 -> 1 of digits-unet with 3x the steps per stage (300 at batch 32)."""
    return config("progressive", "digits-unet", {"start_steps": 8, "stage_steps": 300, "prediction": "v"},
                  name="digits-unet-pd-long", steps=900, batch_size=32, lr=5e-4)


def _unet_pd_heun() -> DistillConfig:
    """Progressive distillation 16 -> 1 of digits-unet with Heun teacher steps, 500 steps per stage."""
    return config("progressive", "digits-unet", {"start_steps": 16, "stage_steps": 500, "prediction": "v",
                                                 "order": 2}, name="digits-unet-pd-heun", steps=2000,
                  batch_size=32, lr=5e-4)


def _unet_pd_heun_tail() -> DistillConfig:
    """The last two halvings 4 -> 2 -> 1 with DDIM teacher steps, from digits-unet-pd-heun's 4-step student
    (Heun in σ breaks on the 2- and 1-step grids' jumps from σ_max; run digits-unet-pd-heun first)."""
    return config("progressive", "runs/digits-unet-pd-heun/student-4step",
                  {"start_steps": 4, "stage_steps": 500, "prediction": "v", "order": 1},
                  name="digits-unet-pd-heun-tail", steps=1000, batch_size=32, lr=5e-4)


def _unet_pd_heun_2k() -> DistillConfig:
    """digits-unet-pd-heun with 4x the steps per stage (2,000 at batch 32), stopped at the 4-step student
    (16 -> 8 -> 4; Heun teacher steps)."""
    return config("progressive", "digits-unet", {"start_steps": 16, "end_steps": 4, "stage_steps": 2000,
                                                 "prediction": "v", "order": 2}, name="digits-unet-pd-heun-2k", steps=4000,
                  batch_size=32, lr=5e-4)


def _unet_pd_heun_2k_tail() -> DistillConfig:
    """4 -> 2 -> 1 with DDIM teacher steps, 2,000 steps per stage, from digits-unet-pd-heun-2k's 4-step student
    (run digits-unet-pd-heun-2k first, into runs/digits-unet-pd-heun-2k)."""
    return config("progressive", "runs/digits-unet-pd-heun-2k/student-4step",
                  {"start_steps": 4, "stage_steps": 2000, "prediction": "v", "order": 1},
                  name="digits-unet-pd-heun-2k-tail", steps=4000, batch_size=32, lr=5e-4)


def _dit_pd_long() -> DistillConfig:
    """Progressive distillation 16 -> 1 of digits-dit, DDIM (Euler in flow time) teacher steps, 500 per stage."""
    return config("progressive", "digits-dit", {"start_steps": 16, "stage_steps": 500},
                  name="digits-dit-pd-long", steps=2000, batch_size=32, lr=5e-4)


PRESETS["digits-dit-pd-long"] = _dit_pd_long
PRESETS["digits-unet-pd-long"] = _unet_pd_long
PRESETS["digits-unet-pd-heun"] = _unet_pd_heun
PRESETS["digits-unet-pd-heun-tail"] = _unet_pd_heun_tail
PRESETS["digits-unet-pd-heun-2k"] = _unet_pd_heun_2k
PRESETS["digits-unet-pd-heun-2k-tail"] = _unet_pd_heun_2k_tail


def get(name: str, **overrides) -> DistillConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown distillation preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    import dataclasses
    return dataclasses.replace(PRESETS[name](), **overrides)


def _threads(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise argparse.ArgumentTypeError(f"must be an integer in [1, 256], got {text!r}")
    return int(text)


def main(argv=None) -> int:
    """Train a preset (what ``effdiff train --preset`` runs for a distillation preset); an error effdiff
    raises on purpose (a busy or non-empty --out, a bad checkpoint) is one line and exit status 2."""
    import sys
    import torch
    from ..errors import EffdiffError
    from .loop import distill
    p = argparse.ArgumentParser(prog="python -m effdiff.distill.presets")
    p.add_argument("preset", choices=sorted(PRESETS))
    p.add_argument("--out", required=True)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true")
    mode.add_argument("--overwrite", action="store_true")
    p.add_argument("--threads", type=_threads, default=1, help="torch threads, 1 to 256")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        print(distill(get(a.preset), a.out, resume=a.resume, overwrite=a.overwrite))
    except (EffdiffError, OSError) as e:
        print(f"{p.prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
