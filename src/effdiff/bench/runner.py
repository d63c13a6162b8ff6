"""The sweep runner: configurations in; a table, ``results.json``, a Pareto plot and sample grids out.

Every configuration of a model starts from the same initial noise and the same class labels,
so differences are the method's alone. Latency is the median of ``repeats`` timed runs after a
warm-up, with torch's threads pinned; speed-ups are against configurations measured in the
same run. A suite is a function ``(model, quick) -> [BenchConfig]`` plus an optional report
``(results, out_dir) -> str`` that adds its own tables and plots.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .. import timesteps, zoo
from ..denoisers import guided
from ..metrics import Scorer, macs_per_sample, pinned_threads, trajectory_error
from ..sampling import randn, sample
from ..training.trainer import machine


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


def _default(model: str, quick: bool) -> list[BenchConfig]:
    ref = (BenchConfig(model, "ddpm-1000", "ddpm", "full", 1000, reference=True) if model == "digits-unet"
           else BenchConfig(model, "euler-100", "euler", "uniform", 100, reference=True))
    if quick:
        return [ref, BenchConfig(model, "ddim-10", "ddim", "uniform", 10),
                BenchConfig(model, "dpmpp-2m-10", "dpmpp-2m", "logsnr", 10)]
    rows = [ref] + [BenchConfig(model, f"ddim-{n}", "ddim", "uniform", n) for n in (50, 20, 10)]
    rows.append(BenchConfig(model, "heun-10", "heun", "karras", 10))
    rows += [BenchConfig(model, f"dpmpp-2m-{n}", "dpmpp-2m", "logsnr", n) for n in (20, 10, 5)]
    return rows


SUITES: dict[str, Callable] = {"default": _default}
SUITE_MODELS: dict[str, list[str]] = {}     # a suite's default models, when not the two below
REPORTS: dict[str, Callable] = {}


def suite(name: str, models: list[str], quick: bool = False) -> list[BenchConfig]:
    if name not in SUITES:
        raise KeyError(f"unknown bench suite {name!r}; known suites: {', '.join(SUITES)}")
    return [c for m in models for c in SUITES[name](m, quick)]


def _jsonable(v):
    """Solver / hook stats as JSON: string keys, tensors as lists, anything else as text."""
    if isinstance(v, dict):
        return {str(k): _jsonable(u) for k, u in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(u) for u in v]
    if torch.is_tensor(v):
        return v.tolist() if v.numel() <= 64 else f"tensor{tuple(v.shape)}"
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)


def _log(msg: str, verbose: bool):
    if verbose:
        print(msg, flush=True)


def _order(configs):
    """Per model: the quality reference first, then the trajectory reference, then the rest."""
    return sorted(configs, key=lambda c: (c.model, not c.reference, not c.traj_ref))


def run(models: list[str] | None = None, suite_name: str = "default", quick: bool = False, out=None,
        n_samples: int | None = None, seed: int = 0, guidance: float = 1.0, repeats: int | None = None,
        threads: int | None = None, configs: list[BenchConfig] | None = None, verbose: bool = True,
        grids: bool = True, max_repeat_s: float = 10.0) -> dict:
    """Run a suite (or explicit ``configs``) and return the ``results.json`` dict. Each
    configuration is timed ``repeats`` times after a warm-up (once if a run takes longer than
    ``max_repeat_s``); ms per sample is the median."""
    from ..data import digits
    models = models or SUITE_MODELS.get(suite_name, ["digits-unet", "digits-dit"])
    configs = configs or suite(suite_name, models, quick)
    n = n_samples or (100 if quick else 360)
    repeats = repeats or (1 if quick else 3)
    threads = threads or torch.get_num_threads()
    out = Path(out) if out else None

    x_train, _ = digits("train")
    x_test, _ = digits("test")
    scorer = Scorer(zoo.load("digits-classifier"), x_train)
    floor = scorer.floor(x_test[:n])
    _log(f"real-vs-real FD floor (held-out {min(n, len(x_test))} vs train): {floor:.3f}", verbose)

    rows, by_name, traj, macs_per_eval = [], {}, {}, {}
    labels = torch.arange(n) % 10
    t_start = time.perf_counter()
    with pinned_threads(threads):
        for cfg in _order(configs):
            den = zoo.load(cfg.model)
            scale = guidance if cfg.guidance is None else cfg.guidance
            D = guided(den, scale)
            sig = sigmas_for(cfg, den.process)
            size = den.meta["model"]["image_size"]
            x_T = randn((n, den.meta["model"].get("in_channels", 1), size, size), seed=seed) * sig[0].float()
            handle = cfg.setup(den, sig, x_T, labels) if cfg.setup is not None else None
            try:
                def go(x, lab):
                    if cfg.generate is not None:
                        return cfg.generate(den, D, x, sig, lab, seed)
                    return sample(D, x, sig, solver=cfg.solver, cond=lab, seed=seed, return_info=True, **cfg.options)

                go(x_T[:2], labels[:2])                              # warm-up
                times = []
                while len(times) < repeats and (not times or times[0] < max_repeat_s):
                    t0 = time.perf_counter()
                    res = go(x_T, labels)
                    times.append(time.perf_counter() - t0)
                if cfg.setup is None:   # no hooks: every evaluation costs the same
                    key = (cfg.model, scale)
                    if key not in macs_per_eval:
                        macs_per_eval[key] = macs_per_sample(lambda x, lab: D(x, sig[:1].expand(len(x)).float(), lab),
                                                             x_T[:2], labels[:2])
                    macs = macs_per_eval[key] * res.nfe
                else:
                    macs = macs_per_sample(go, x_T[:2], labels[:2])
            finally:
                if handle is not None:
                    handle.remove()
            ms = 1000 * sorted(times)[len(times) // 2] / n
            q = scorer.score(res.x, labels)
            ref = next((r for r in rows if r["model"] == cfg.model and r["reference"]), None)
            row = {"model": cfg.model, "config": cfg.config, "solver": cfg.solver, "schedule": cfg.schedule,
                   "nfe": res.nfe, "ms_per_sample": ms, "speedup": (ref["ms_per_sample"] / ms) if ref else 1.0,
                   "fd": q["fd"], "class_acc": q.get("class_acc"), "macs_per_sample": macs,
                   "precision": q["precision"], "recall": q["recall"], "steps": cfg.steps,
                   "reference": cfg.reference, "guidance": scale, "options": cfg.options,
                   "timed_runs": len(times)}
            if res.info:
                row["info"] = _jsonable(res.info)
            if cfg.traj_ref:
                traj[cfg.model] = res.x
            if cfg.model in traj:
                row["traj_err"] = trajectory_error(res.x, traj[cfg.model])
            base = by_name.get((cfg.model, cfg.baseline))
            if base is not None:
                row.update(baseline=cfg.baseline, macs_ratio=base["macs_per_sample"] / macs,
                           speedup_vs_baseline=base["ms_per_sample"] / ms,
                           fd_change=(q["fd"] - base["fd"]) / base["fd"])
            by_name[(cfg.model, cfg.config)] = row
            rows.append(row)
            extra = f"  traj={row['traj_err']:.4f}" if "traj_err" in row else ""
            if "macs_ratio" in row:
                extra += f"  MACs/{row['macs_ratio']:.2f} x{row['speedup_vs_baseline']:.2f} dFD={100 * row['fd_change']:+.1f}%"
            _log(f"{cfg.model:12s} {cfg.config:28s} nfe={res.nfe:5d} {ms:8.3f} ms/sample  "
                 f"x{row['speedup']:7.1f}  FD={q['fd']:7.3f}  acc={q.get('class_acc', float('nan')):.3f}{extra}", verbose)
            if out is not None and grids:
                from ..viz import save_grid
                save_grid(res.x[:100], out / "grids" / f"{cfg.model}__{cfg.config}.png")

    results = {"machine": {**machine(), "bench_threads": threads}, "floor_fd": floor, "n_samples": n,
               "seed": seed, "repeats": repeats, "max_repeat_s": max_repeat_s, "quick": quick, "suite": suite_name,
               "wall_time_s": round(time.perf_counter() - t_start, 1), "rows": rows}
    if out is not None:
        from ..viz import pareto_plot
        out.mkdir(parents=True, exist_ok=True)
        pareto_plot(rows, out / "pareto.png", floor=floor, title="FD vs ms per sample (lower-left is better)")
        if suite_name in REPORTS:
            results["report"] = REPORTS[suite_name](results, out)
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return results


def table(results: dict) -> str:
    """The results as a Markdown table."""
    head = "| model | config | NFE | ms/sample | speed-up | FD | class acc |\n|---|---|---:|---:|---:|---:|---:|"
    lines = [head]
    for r in results["rows"]:
        acc = "" if r.get("class_acc") is None else f"{100 * r['class_acc']:.1f}%"
        lines.append(f"| {r['model']} | {r['config']} | {r['nfe']} | {r['ms_per_sample']:.3f} | "
                     f"{r['speedup']:.1f}x | {r['fd']:.3f} | {acc} |")
    lines.append(f"\nreal-vs-real FD floor: {results['floor_fd']:.3f}")
    if results.get("report"):
        lines.append("\n" + results["report"])
    return "\n".join(lines)
