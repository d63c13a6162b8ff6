"""``effdiff bench --suite systems``: each systems switch (``effdiff.systems``, family "systems")
against the plain run of the same solver and steps, timed interleaved with it: wall-clock
speed-up and the max |x - x_plain| over the samples of the same seed (plus the FD change).

``compile`` is a row too (its compile time falls in the untimed warm-up); ``cuda-graphs`` runs
only where CUDA is present (bench/gpu.sh). Deviations are taken against the plain row's samples
of the same seed, which the runner always samples first in each round.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import systems as S  # noqa: F401  (registers the switches)
from .. import techniques as T
from ..sampling import sample
from .config import BenchConfig, register_suite, save_table

# row label -> (technique, config fields)
VARIANTS = {
    "sdpa-math": ("sdpa", {"backends": ("math",)}),
    "sdpa-flash": ("sdpa", {"backends": ("flash",)}),
    "compile": ("compile", {}),
    "channels-last": ("channels-last", {}),
    "autocast-bf16": ("autocast", {"dtype": "bfloat16"}),
    "autocast-fp16": ("autocast", {"dtype": "float16"}),
    "threads-1": ("threads", {"num_threads": 1}),
    "cuda-graphs": ("cuda-graphs", {}),
    "autocast-bf16+compile": [("autocast", {"dtype": "bfloat16"}), ("compile", {})],   # applied in this order
}
QUICK = ("sdpa-math", "channels-last", "autocast-bf16", "threads-1")

_SAMPLES: dict[tuple, torch.Tensor] = {}     # (model, config, seed) -> samples (the plain rows')


def remember(model: str, config: str, seed: int, x: torch.Tensor) -> None:
    """Keep a row's samples of ``seed`` so later rows can measure their deviation from it."""
    _SAMPLES[(model, config, seed)] = x.detach().clone()


def deviation(model: str, baseline: str, seed: int, x: torch.Tensor) -> float | None:
    """max |x - x_baseline| for the same seed (None when the baseline has not run this seed)."""
    ref = _SAMPLES.get((model, baseline, seed))
    if ref is None or ref.shape != x.shape:          # e.g. the runner's 2-sample MACs probe
        return None
    return float((x.float() - ref.float()).abs().max())


def plain(model: str, config: str, solver: str, **options):
    """generate() of a baseline row: ``ed.sample`` whose samples are remembered per seed."""
    def generate(den, D, x, sigmas, labels, seed):
        res = sample(D, x, sigmas, solver=solver, cond=labels, seed=seed, return_info=True, **options)
        remember(model, config, seed, res.x)
        return res
    return generate


class _Switch:
    """One switch row: ``setup`` applies the technique to the row's own model instance."""

    def __init__(self, model: str, baseline: str, entries: list, solver: str):
        self.model, self.baseline, self.entries, self.solver = model, baseline, entries, solver

    def setup(self, den, sigmas, x, labels):
        return T.apply([(n, dict(f)) for n, f in self.entries], den)

    def generate(self, den, D, x, sigmas, labels, seed):
        res = sample(D, x, sigmas, solver=self.solver, cond=labels, seed=seed, return_info=True)
        res.stats["max_dev_vs_baseline"] = deviation(self.model, self.baseline, seed, res.x)
        return res


def _systems(model: str, quick: bool) -> list[BenchConfig]:
    from .. import zoo
    den = zoo.load(model)
    steps, solver = 20, "ddim"
    base = f"{solver}-{steps}"
    out = [BenchConfig(model, base, solver, "uniform", steps, reference=True, generate=plain(model, base, solver))]
    for label, spec in VARIANTS.items():
        entries = spec if isinstance(spec, list) else [spec]
        if (quick and label not in QUICK) or any(T.get(n).why_not(den) is not None for n, _ in entries):
            continue
        row = _Switch(model, base, entries, solver)
        out.append(BenchConfig(model, f"{base}+{label}", solver, "uniform", steps, baseline=base,
                               setup=row.setup, generate=row.generate))
    return out


def report(results: dict, out: Path) -> str:
    lines = ["Systems switches against the plain run of the same model, solver and steps (same noise, timed "
             "interleaved):", "", "| model | run | speed-up | max abs deviation | FD change |", "|---|---|---:|---:|---:|"]
    for r in results["rows"]:
        if "speedup_vs_baseline" in r:
            dev = (r.get("info") or {}).get("max_dev_vs_baseline")
            lines.append(f"| {r['model']} | {r['config']} | {r['speedup_vs_baseline']:.2f}x | "
                         f"{'n/a' if dev is None else f'{dev:.2g}'} | {100 * r['fd_change']:+.1f}% |")
    return save_table(out, "systems.md", lines)


register_suite("systems", _systems, models=["digits-unet", "digits-dit"], report=report)
