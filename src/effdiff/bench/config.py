"""Bench configurations and the suite registry: a suite is ``(model, quick) -> [BenchConfig]``, an
optional report ``(results, out_dir) -> str`` and an optional follow-up ``(results, measure) -> None``
that may sample more (e.g. re-score picked configurations on fresh seeds)."""
from __future__ import annotations

from pathlib import Path

from dataclasses import dataclass, field
from typing import Callable

import torch

from .. import timesteps
from ..errors import UnknownName


@dataclass
class BenchConfig:
    """One row: sample ``model`` with ``solver`` on ``schedule`` with ``steps`` steps.

    setup(den, sigmas, x, labels) may attach hooks (caching...) and returns a handle with
    ``remove()``; ``baseline`` names the config of the same model to compare MACs, speed and FD
    against; ``traj_ref`` marks the high-accuracy solve that trajectory errors are measured to.
    """
    model: str
    config: str
    solver: str
    schedule: str          # a timesteps.SCHEDULES name, or "full" (every step of a discrete table)
    steps: int
    options: dict = field(default_factory=dict)
    reference: bool = False
    traj_ref: bool = False
    baseline: str | None = None
    setup: Callable | None = None
    schedule_options: dict = field(default_factory=dict)
    guidance: float | None = None          # overrides the run's guidance scale
    generate: Callable | None = None       # (den, D, x, sigmas, labels, seed) -> result with x, nfe, info


def sigmas_for(cfg: BenchConfig, process) -> torch.Tensor:
    if cfg.schedule == "full":
        return timesteps.full(process)
    return timesteps.get(cfg.schedule, cfg.steps, process, **cfg.schedule_options)


# the default suite's quality reference per model (name, solver, schedule, steps); others: DEFAULT_REFERENCE
REFERENCES: dict[str, tuple[str, str, str, int]] = {
    "digits-unet": ("ddpm-1000", "ddpm", "full", 1000),      # the model's own ancestral sampler
    "mnist-unet": ("ddim-100", "ddim", "uniform", 100),      # 28x28: DDPM-1000 x 4 runs is hours on a CPU
}
DEFAULT_REFERENCE = ("euler-100", "euler", "uniform", 100)


def _default(model: str, quick: bool) -> list[BenchConfig]:
    name, solver, sched, steps = REFERENCES.get(model, DEFAULT_REFERENCE)
    ref = BenchConfig(model, name, solver, sched, steps, reference=True)
    if quick:
        return [ref, BenchConfig(model, "ddim-10", "ddim", "uniform", 10),
                BenchConfig(model, "dpmpp-2m-10", "dpmpp-2m", "logsnr", 10)]
    rows = [ref] + [BenchConfig(model, f"ddim-{n}", "ddim", "uniform", n) for n in (50, 20, 10)]
    rows.append(BenchConfig(model, "heun-10", "heun", "karras", 10))
    rows += [BenchConfig(model, f"dpmpp-2m-{n}", "dpmpp-2m", "logsnr", n) for n in (20, 10, 5)]
    return rows


SUITES: dict[str, Callable] = {"default": _default}
SUITE_MODELS: dict[str, list[str]] = {}     # a suite's default models, when not DEFAULT_MODELS
REPORTS: dict[str, Callable] = {}
FOLLOW_UPS: dict[str, Callable] = {}
DEFAULT_MODELS = ["digits-unet", "digits-dit"]


def register_suite(name: str, configs: Callable | None = None, *, models: list[str] | None = None,
                   report: Callable | None = None, follow_up: Callable | None = None):
    """Register bench suite ``name``: ``configs(model, quick) -> [BenchConfig]``, its default ``models``
    (else ``DEFAULT_MODELS``), its ``report(results, out) -> str`` and its ``follow_up(results, configs,
    measure)``. Without ``configs``, a decorator: ``@register_suite("mine", report=report)``."""
    def deco(fn: Callable) -> Callable:
        SUITES[name] = fn
        for table, value in ((SUITE_MODELS, models), (REPORTS, report), (FOLLOW_UPS, follow_up)):
            if value is not None:
                table[name] = list(value) if table is SUITE_MODELS else value
        return fn
    return deco(configs) if configs is not None else deco


# the module that registers each suite, imported on first use (a suite's optional dependencies,
# e.g. peft for "finetune", are needed only when it runs)
SUITE_MODULES = {"solvers": "solvers", "solvers-compact": "solvers", "parallel": "solvers", "caching": "caching", "retrieval": "retrieval",
                 "compress": "compress", "distill": "distill", "distributed": "distributed",
                 "finetune": "finetune", "systems": "systems", "training": "training",
                 "guidance": "guidance", "guidance-best": "guidance", "guidance-free": "guidance", "guidance-scales": "guidance",
                 "plan": "plan"}
# suites whose rows are not BenchConfig rows of image models: their module's ``main(argv)`` runs them
# (``effdiff bench --suite video`` = ``python -m effdiff.bench.video``), the flags translated by the CLI
RUNNER_SUITES = {"video": "video"}


def load_suite(name: str) -> None:
    """Import the module that registers suite ``name`` (KeyError naming the known suites)."""
    if name in SUITES:
        return
    if name in RUNNER_SUITES:
        raise UnknownName(f"bench suite {name!r} has its own runner (effdiff.bench.{RUNNER_SUITES[name]}); "
                          "run it with `effdiff bench --suite " + name + "`")
    if name not in SUITE_MODULES:
        raise UnknownName(f"unknown bench suite {name!r}; "
                          f"known suites: {', '.join(sorted({*SUITES, *SUITE_MODULES, *RUNNER_SUITES}))}")
    import importlib
    importlib.import_module(f"{__package__}.{SUITE_MODULES[name]}")


def suite(name: str, models: list[str], quick: bool = False) -> list[BenchConfig]:
    load_suite(name)
    return [c for m in models for c in SUITES[name](m, quick)]


def save_table(out, filename: str, lines: list[str]) -> str:
    """A suite report's Markdown lines joined, written atomically to ``out/filename``; returns the text."""
    from ..io import atomic_write
    text = "\n".join(lines)
    atomic_write(Path(out) / filename, text + "\n")
    return text
