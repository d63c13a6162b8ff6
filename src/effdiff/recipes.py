"""Recipes: the sequences the command line, the bench and the zoo cards share, written once.

- ``train_preset``: a preset of any registry (training, distillation, fine-tuning), data-parallel
  under ``torchrun``;
- ``sample_model``: samples of a zoo model of any kind (a student on its own grid with its own solver,
  PriorGrad from its prior, a latent model decoded to images);
- ``fit_schedule``: a fitted schedule (AYS, DP) for a zoo model on its own training data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

def train_preset(name: str, out, resume: bool = False, overwrite: bool = False, progress: bool = True,
                 device=None, **overrides) -> Path | None:
    """Train preset ``name`` into ``out``: a fine-tuning preset, a distillation preset, or a training
    preset (data-parallel when launched by ``torchrun``; ranks other than the writer return None), on
    ``device`` (networks, batches, noise and labels there; the random draws are the CPU's)."""
    from .training.placement import on_device
    with on_device(device):
        return _train_preset(name, out, resume, overwrite, progress, device, **overrides)


def _cpu_only(device, why: str) -> None:
    """A training path that runs on the CPU only: a clear error for any other device."""
    import torch
    if device is not None and torch.device(device).type != "cpu":
        from .device import DeviceError
        raise DeviceError(f"--device {device}: {why}; run it with --device cpu")


def _train_preset(name: str, out, resume: bool, overwrite: bool, progress: bool, device, **overrides):
    from .distill import presets as distill_presets
    from .finetune import presets as finetune_presets
    from .io import check_writable
    overrides = {k: v for k, v in overrides.items() if v is not None}
    out = Path(out)
    if name in finetune_presets.PRESETS:          # LoRA / full / control fine-tune of a zoo model
        from .finetune.cli import train_preset as finetune_preset
        check_writable(out, directory=True)
        return finetune_preset(name, out, resume=resume, overwrite=overwrite, progress=progress, **overrides)
    if name in distill_presets.PRESETS:           # a few-step student of a zoo teacher
        from .distill import distill
        _cpu_only(device, f"distillation preset {name!r}: its methods draw noise on the CPU inside the loss")
        cfg = distill_presets.get(name, **overrides)
        check_writable(out, directory=True)
        return distill(cfg, out, resume=resume, progress=progress, overwrite=overwrite)
    from .guidance import mg_train
    if name in mg_train.PRESETS:                  # Model Guidance (fine-tunes a zoo model with the MG objective)
        cfg = mg_train.preset(name, **overrides)
        check_writable(out, directory=True)
        return mg_train.train(cfg, out, resume=resume, progress=progress, overwrite=overwrite)
    from .training import preset, train
    from .training.presets import PRESETS as training_presets
    if name not in training_presets:
        families = {"training": training_presets, "fine-tuning": finetune_presets.PRESETS,
                    "distillation": distill_presets.PRESETS, "model guidance": mg_train.PRESETS}
        raise KeyError(f"unknown preset {name!r}; known presets: "
                       + "; ".join(f"{k}: {', '.join(v)}" for k, v in families.items()))
    cfg = preset(name, **overrides)
    check_writable(out, directory=True)
    from .distributed.launch import init_from_env, is_writer
    if init_from_env(backend="gloo"):             # under torchrun: data-parallel (the trainer runs on the CPU)
        _cpu_only(device, "data-parallel training under torchrun runs on the CPU (gloo)")
        from .training import ddp
        path = ddp.train(cfg, out, resume=resume, progress=progress, overwrite=overwrite)
        return path if is_writer() else None
    return train(cfg, out, resume=resume, progress=progress, overwrite=overwrite)


@dataclass
class Sampled:
    """Images of ``sample_model`` and how they were made."""

    result: object            # SampleResult with images in .x
    solver: str
    schedule: str


def grid_for(den, solver: str, schedule: str, steps: int, own_grid: bool = True):
    """(σ grid, solver, schedule description) a zoo model samples on: a distilled student's own grid
    and solver (unless ``own_grid`` is False), the full discrete grid for ``"full"``, else the named
    schedule over its process."""
    from . import timesteps
    from .distill.student import Student
    if own_grid and isinstance(den, Student):
        return den.grid(), den.spec.solver, f"its {den.spec.steps}-step student grid"
    if schedule == "full":
        return timesteps.full(den.process), solver, schedule
    return timesteps.get(schedule, steps, den.process), solver, schedule


def sample_model(den, n: int, solver: str = "dpmpp-2m", schedule: str = "logsnr", steps: int = 10,
                 guidance: float = 1.0, seed: int = 0, cond=None, wrap=None, progress: bool = False,
                 guide=None, own_grid: bool = True, device=None) -> Sampled:
    """``n`` images of a loaded zoo model of any kind (seeded per-sample noise in its own shape, from its own
    prior, decoded when it is a latent model); ``wrap(den)`` may attach adapters or control first;
    ``guide(den, scale)`` applies the guidance (default ``denoisers.guided``); ``own_grid=False`` samples a
    student on the named schedule instead of its own grid; ``device``: where to sample (the model, with
    whatever ``wrap`` attached, is moved there; noise and labels too)."""
    from .denoisers import guided
    from .latent.denoiser import images
    from .sampling import initial, sample
    sig, solver, schedule = grid_for(den, solver, schedule, steps, own_grid)
    used = wrap(den) if wrap is not None else den
    x = initial(den, n, sig, seed=seed, cond=cond)        # seeded on the CPU: same samples on every device
    if device is not None:
        x, cond = x.to(device), (cond.to(device) if hasattr(cond, "to") else cond)
        for m in {id(m): m for m in (den, used) if hasattr(m, "to")}.values():    # adapters attached by wrap too
            m.to(device)
    res = sample((guide or guided)(used, guidance), x, sig, solver=solver, cond=cond, seed=seed, return_info=True,
                 progress=progress)
    return Sampled(images(den, res), solver, schedule)


def fit_schedule(model: str, out, method: str = "ays", steps: int = 10, seed: int = 0,
                 samples: int | None = None, solver: str | None = None, progress: bool = False) -> Path:
    """Fit a schedule for zoo model ``model`` on its own training split and write it to ``out``
    (``method="e2e"``: for ``solver`` at ``steps``)."""
    from . import schedule_opt
    from .io import check_writable
    check_writable(out)
    opts = {} if samples is None else {"num_samples": samples}
    if method == "e2e":
        opts["progress"] = progress
    return schedule_opt.fit(model, out, method, steps, seed, solver=solver, **opts)
