"""The sweep runner: configurations in; a table, ``results.json``, a Pareto plot and sample grids out.

Every configuration of a model starts from the same initial noise and class labels for a given
seed, so differences are the method's alone. Each row is sampled on every seed (≥3 by default)
and scored by `metrics.score` against held-out data (docs/evaluation.md); a row with a baseline
gets the paired relative FD change with a 95% t-interval over seeds. Timing: a warm-up on the full
batch, then rounds that run every configuration of the model once in turn (bench/timing.py).
Suites, reports and follow-ups are registered in bench/config.py.

Reference rows are scored once and cached on disk (bench/refcache.py; the run says which); every
row shows a progress bar with its name; ``results.json`` is rewritten (atomically, ``complete:
false``) after each model's rows, so a killed run keeps what finished.
"""
from __future__ import annotations

import inspect
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch

from .. import zoo
from ..report import grid_stem
from ..denoisers import guided
from ..metrics import evaluation, macs_per_sample, pinned_threads, trajectory_error
from ..io import RunLock, atomic_write
from ..latent.denoiser import decode_macs, images
from ..sampling import initial, sample
from .config import (DEFAULT_MODELS, FOLLOW_UPS, REPORTS, SUITE_MODELS, SUITES, BenchConfig, load_suite,  # noqa: F401
                     sigmas_for, suite)
from .machine import machine
from . import refcache
from .provenance import provenance
from .scoring import REAL_METRICS, dataset_of, labels_for, mean_sd, paired_change, pct_ci, pm, summarize
from .timing import ms_stats, rounds, timed

WARMUP_STEPS = 3      # a plain solver's warm-up: this many steps on the full batch (allocations, kernels)

__all__ = ["BenchConfig", "run", "suite", "table", "SUITES", "REPORTS", "SUITE_MODELS", "FOLLOW_UPS"]


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


@dataclass
class Prepared:
    """One configuration ready to run: its own model instance (hooks stay per row), σ's and noise."""
    cfg: BenchConfig
    den: object
    D: object
    sig: torch.Tensor
    scale: float
    handle: object = None
    times: list = field(default_factory=list)
    per_seed: dict = field(default_factory=dict)     # seed -> score dict
    first: object = None                             # the first seed's SampleResult
    cache_key: dict | None = None                    # a cacheable reference's key
    cached: Path | None = None                       # the cache entry its scores came from
    grid_png: bytes | None = None
    device: torch.device | None = None               # where it samples (None: the CPU)
    cpu_labels: torch.Tensor | None = None           # the run's labels on the CPU (noise is drawn there)

    def noise(self, n: int, seed: int, labels=None) -> torch.Tensor:
        """Seeded on the CPU (the same noise on every device), then moved to the row's device; ``labels``
        is a prefix of the run's labels."""
        if self.device is None:
            return initial(self.den, n, self.sig, seed=seed, cond=labels)
        cond = None if labels is None else self.cpu_labels[:len(labels)]
        return initial(self.den, n, self.sig, seed=seed, cond=cond).to(self.device)

    def go(self, x, labels, seed, stop: int | None = None, bar=None):
        if self.cfg.generate is not None:
            return images(self.den, self.cfg.generate(self.den, self.D, x, self.sig, labels, seed))
        res = sample(self.D, x, self.sig, solver=self.cfg.solver, cond=labels, seed=seed, return_info=True,
                     stop=stop, callback=None if bar is None else (lambda _: bar.update()), **self.cfg.options)
        return res if stop is not None else images(self.den, res)     # latent models: decode (timed, counted)

    def warm_up(self, n: int, labels, seed: int):
        """Full batch; the first WARMUP_STEPS steps for plain solvers, the whole run with hooks or generators."""
        whole = self.cfg.generate is not None or self.cfg.setup is not None
        self.go(self.noise(n, seed, labels), labels, seed, stop=None if whole else min(WARMUP_STEPS, len(self.sig) - 1))


def _prepare(cfg: BenchConfig, guidance: float, n: int, seed: int, labels, device=None, cpu_labels=None) -> Prepared:
    den = zoo.load(cfg.model, device=device)
    scale = guidance if cfg.guidance is None else cfg.guidance
    p = Prepared(cfg, den, guided(den, scale), sigmas_for(cfg, den.process), scale, device=device,
                 cpu_labels=cpu_labels)
    if cfg.setup is not None:
        p.handle = cfg.setup(den, p.sig, p.noise(n, seed, labels), labels)
    return p


def _macs(p: Prepared, labels, cache: dict, nfe: int) -> float:
    """MACs per sample: one evaluation x NFE for hook-free rows (every evaluation costs the same)."""
    l2 = None if labels is None else labels[:2]
    x2 = p.noise(2, 0, l2)
    if p.cfg.setup is not None:
        return macs_per_sample(lambda x, lab: p.go(x, lab, 0), x2, l2)
    key = (p.cfg.model, p.scale)
    if key not in cache:
        cache[key] = macs_per_sample(lambda x, lab: p.D(x, p.sig[:1].expand(len(x)).float(), lab), x2, l2)
    return cache[key] * nfe + decode_macs(p.den)          # a latent model's decode, once per sample


def _bar(p: Prepared, seed: int, verbose: bool, steps: int | None = None):
    """A progress bar over one run of row ``p`` (its steps), named by the row, gone when done."""
    if not verbose or p.cfg.generate is not None:
        return None
    from tqdm.auto import tqdm
    total = steps or len(p.sig) - 1
    what = f"{p.cfg.model} {p.cfg.config} seed {seed}" + (" (timing only: scores cached)" if p.cached else "")
    return tqdm(total=total, desc=what, unit="step", leave=False, dynamic_ncols=True,
                mininterval=0.1 if sys.stderr.isatty() else 10.0)      # a log file gets a line per 10 s


def _timed_run(p: Prepared, x, labels, seed: int, verbose: bool):
    """(result, seconds for the whole run): a cached reference runs its first TIMED_STEPS steps and
    is scaled to all its evaluations."""
    stop = min(refcache.TIMED_STEPS, len(p.sig) - 1) if p.cached else None
    bar = _bar(p, seed, verbose, stop)
    try:
        res, dt = timed(p.go, x, labels, seed, stop, bar)
    finally:
        if bar is not None:
            bar.close()
    if p.cached:
        dt *= p.first.nfe / max(res.nfe, 1)
    return res, dt


class Measure:
    """Samples and scores configurations of one run; suites' follow-ups call it for more seeds."""

    def __init__(self, n: int, guidance: float, verbose: bool, use_cache: bool = True, device=None):
        self.n, self.guidance, self.verbose, self.use_cache = n, guidance, verbose, use_cache
        self.device = None if device is None or torch.device(device).type == "cpu" else torch.device(device)
        self.macs_cache: dict = {}
        self.cache_notes: list[str] = []

    def model_run(self, configs: list[BenchConfig], seeds: list[int], repeats: int, traj: dict) -> list[Prepared]:
        """Warm up every config of one model on the full batch, then timed rounds over the seeds."""
        den0 = zoo.load(configs[0].model)
        cpu_labels = labels_for(self.n, den0.cond_classes)
        labels = cpu_labels if cpu_labels is None or self.device is None else cpu_labels.to(self.device)
        ev = evaluation(dataset_of(den0))
        prepared = [_prepare(c, self.guidance, self.n, seeds[0], labels, self.device, cpu_labels) for c in configs]
        for p in prepared:
            if self.device is None:        # the reference cache holds CPU results only
                self._from_cache(p, ev, seeds)
        try:
            for p in prepared:
                p.warm_up(self.n, labels, seeds[0])
            for seed in rounds(seeds, repeats):
                for p in prepared:
                    res, dt = _timed_run(p, p.noise(self.n, seed, labels), labels, seed, self.verbose)
                    p.times.append(dt)
                    if seed not in p.per_seed:
                        p.per_seed[seed] = self._score(p, res, cpu_labels, seed, ev, traj)
                        p.first = p.first or res
            for p in prepared:
                p.macs = _macs(p, labels, self.macs_cache, p.first.nfe)
                self._to_cache(p)
        finally:
            for p in prepared:
                if p.handle is not None:
                    p.handle.remove()
        return prepared

    def _from_cache(self, p: Prepared, ev, seeds: list[int]) -> None:
        """A cacheable reference gets its key; with a cache entry, its scores, NFE and grid from it."""
        if not refcache.cacheable(p.cfg):
            return
        p.cache_key = refcache.key(p.cfg, p.den, ev, p.scale, self.n, seeds)
        entry, path = refcache.lookup(p.cache_key) if self.use_cache else (None, None)
        if entry is None:
            return
        p.cached, p.per_seed, p.grid_png = path, refcache.per_seed(entry), refcache.grid_png(entry)
        p.first = SimpleNamespace(nfe=int(entry["nfe"]), x=None, info=None)
        self.cache_notes.append(f"{p.cfg.model} {p.cfg.config}: scores read from the cache {path} (seeds {seeds}, "
                                f"n={self.n}); its time measured now on {refcache.TIMED_STEPS} steps, scaled")
        _log(f"cached: {self.cache_notes[-1]}", self.verbose)

    def _to_cache(self, p: Prepared) -> None:
        if p.cache_key is None or p.cached is not None:
            return
        grid = None
        if p.first.x is not None:
            import tempfile
            from ..viz import save_grid
            with tempfile.TemporaryDirectory() as tmp:
                grid = Path(save_grid(p.first.x[:100], Path(tmp) / "grid.png")).read_bytes()
        folder = os.environ.get("EFFDIFF_CACHE_STORE")
        p.grid_png = grid                      # the row's grid file is written from these bytes (_grid)
        try:
            path = refcache.store(p.cache_key, p.per_seed, p.first.nfe, grid, Path(folder) if folder else None)
        except OSError as e:                   # an unwritable cache costs time next run, never this run
            _log(f"could not cache {p.cfg.config}: {e}", self.verbose)
            return
        self.cache_notes.append(f"{p.cfg.model} {p.cfg.config}: computed and cached in {path}")
        _log(f"cached for next time: {path}", self.verbose)

    def _score(self, p: Prepared, res, labels, seed: int, ev, traj: dict) -> dict:
        q = ev.score(res.x.cpu(), labels, seed=seed, real_vs_real=False)
        q["nfe"] = res.nfe
        if p.cfg.traj_ref:
            traj[(p.cfg.model, seed)] = res.x
        if (p.cfg.model, seed) in traj:
            q["traj_err"] = trajectory_error(res.x, traj[(p.cfg.model, seed)])
        return q


def _row(p: Prepared, n: int, rows: list[dict], by_name: dict) -> dict:
    cfg, seeds = p.cfg, sorted(p.per_seed)
    qs = [p.per_seed[s] for s in seeds]
    timing = ms_stats(p.times, n)
    ref = next((r for r in rows if r["model"] == cfg.model and r["reference"]), None)
    row = {"model": cfg.model, "config": cfg.config, "solver": cfg.solver, "schedule": cfg.schedule,
           "nfe": p.first.nfe, **timing, "macs_per_sample": p.macs, "steps": cfg.steps, "reference": cfg.reference,
           "guidance": p.scale, "options": cfg.options, "seeds": seeds, "dataset": qs[0]["dataset"],
           **summarize(qs), "fd_per_seed": [q["fd"] for q in qs],
           "fd_per_class_list": [mean_sd([q["fd_per_class_list"][c] for q in qs])[0]
                                 if all(q["fd_per_class_list"][c] is not None for q in qs) else None
                                 for c in range(len(qs[0]["fd_per_class_list"]))]}
    row["speedup"] = ref["ms_per_sample"] / row["ms_per_sample"] if ref else 1.0
    if "traj_err" in qs[0]:
        row["traj_err"] = mean_sd([q["traj_err"] for q in qs])[0]
    if p.first.info:
        row["info"] = _jsonable(p.first.info)
    base = by_name.get((cfg.model, cfg.baseline))
    if base is not None:
        row["fd_change"], row["fd_change_ci"] = paired_change(row["fd_per_seed"], base["fd_per_seed"])
        row.update(baseline=cfg.baseline, macs_ratio=base["macs_per_sample"] / p.macs,
                   speedup_vs_baseline=base["ms_per_sample"] / row["ms_per_sample"])
    return row


def compare_to_reference(rows: list[dict]) -> None:
    """Every row of a model that has a quality reference row gets ``fd_vs_ref`` and
    ``fd_vs_ref_ci``: the paired (same seeds, same noise) relative FD change and its 95% interval."""
    refs = {r["model"]: r for r in rows if r.get("reference")}
    for r in rows:
        ref = refs.get(r["model"])
        if ref is not None and r is not ref:
            r["fd_vs_ref"], r["fd_vs_ref_ci"] = paired_change(r["fd_per_seed"], ref["fd_per_seed"])


def _real_vs_real(datasets: list[str], n: int, seeds: list[int], labels_by: dict) -> dict:
    """Per dataset: an equal-size class-balanced sample of training images scored the same way."""
    out = {}
    for ds in datasets:
        ev = evaluation(ds)
        qs = []
        for s in seeds:
            rx, ry = ev.real_sample(labels_by[ds], n, torch.Generator().manual_seed(s))
            qs.append(ev.quality(rx, ry if labels_by[ds] is not None else None))
        out[ds] = {**summarize(qs, REAL_METRICS), "seeds": list(seeds), "n": n}
    return out


def run(*args, **kwargs) -> dict:
    """``_run`` (below) holding the output folder's run lock (``io.RunLock``) while it writes there: a second
    bench, training or fine-tune into the same ``out`` fails at once naming the holder (issue 25)."""
    out = inspect.signature(_run).bind(*args, **kwargs).arguments.get("out")
    if not out:
        return _run(*args, **kwargs)
    with RunLock(Path(out)):
        return _run(*args, **kwargs)


def _run(models: list[str] | None = None, suite_name: str = "default", quick: bool = False, out=None,
        n_samples: int | None = None, seed: int = 0, guidance: float = 1.0, repeats: int | None = None,
        threads: int | None = None, configs: list[BenchConfig] | None = None, verbose: bool = True,
        grids: bool = True, max_repeat_s: float | None = None, n_seeds: int | None = None,
        use_cache: bool = True, device=None) -> dict:
    """Run a suite (or explicit ``configs``) and return the ``results.json`` dict.

    Seeds ``seed, seed+1, ...`` (``n_seeds``: 3 by default, 1 in quick mode); each row is timed
    ``max(repeats, n_seeds)`` times (repeats: 3, quick 1) after a full-batch warm-up.
    ``max_repeat_s`` is accepted for old callers and ignored: every row is timed the same number of times.
    ``device``: where every row samples (networks, noise, labels; scored on the CPU; the reference cache is
    read and written only for CPU runs).
    """
    load_suite(suite_name)
    models = models or SUITE_MODELS.get(suite_name, DEFAULT_MODELS)
    configs = configs or suite(suite_name, models, quick)
    n = n_samples or (100 if quick else 360)
    seeds = [seed + i for i in range(n_seeds or (1 if quick else 3))]
    repeats = repeats or (1 if quick else 3)
    threads = threads or torch.get_num_threads()
    out = Path(out) if out else None
    measure = Measure(n, guidance, verbose, use_cache, device)

    rows, by_name, traj, labels_by = [], {}, {}, {}
    t_start = time.perf_counter()
    prov = provenance()          # the code's commit and dirty flag when the run starts (issue 24)
    with pinned_threads(threads):
        for model in dict.fromkeys(c.model for c in _order(configs)):
            mine = [c for c in _order(configs) if c.model == model]
            den = zoo.load(model)
            labels_by[dataset_of(den)] = labels_for(n, den.cond_classes)
            for p in measure.model_run(mine, seeds, repeats, traj):
                row = _row(p, n, rows, by_name)
                if p.cached is not None:
                    row["cached"] = str(p.cached)
                by_name[(model, p.cfg.config)] = row
                rows.append(row)
                _log(_line(row), verbose)
                if out is not None and grids:
                    _grid(p, out / "grids" / f"{grid_stem(model, p.cfg.config)}.png")
            if out is not None:                   # a killed run keeps every finished model's rows
                compare_to_reference(rows)
                _write(out, {"rows": rows, "seeds": seeds, "n_samples": n, "quick": quick, "suite": suite_name,
                             "provenance": prov, "cache": measure.cache_notes, "complete": False})
        real = _real_vs_real(list(labels_by), n, seeds, labels_by)
        results = {"rows": rows, "seeds": seeds}
        if suite_name in FOLLOW_UPS:
            FOLLOW_UPS[suite_name](results, configs, lambda cfgs, s: _follow_up(measure, cfgs, s))
    for r in rows:
        r["real_vs_real_fd"] = real[r["dataset"]]["fd"]
    compare_to_reference(rows)
    first = real[next(iter(real))]
    results = {**results, "provenance": prov, "machine": {**machine(), "bench_threads": threads,
                                                                  "bench_device": str(measure.device or "cpu")}, "real_vs_real": real,
               "real_vs_real_fd": first["fd"], "floor_fd": first["fd"],   # floor_fd: the old name, kept for readers
               "n_samples": n, "seed": seed, "seeds": seeds, "repeats": repeats, "max_repeat_s": None,
               "quick": quick, "suite": suite_name, "rows": rows, "cache": measure.cache_notes, "complete": True}
    results["wall_time_s"] = round(time.perf_counter() - t_start, 1)
    if out is not None:
        from ..viz import pareto_plot
        out.mkdir(parents=True, exist_ok=True)
        pareto_plot(rows, out / "pareto.png", floor=first["fd"], title="FD vs ms per sample (lower-left is better)")
        atomic_write(out / "results.json", json.dumps(results, indent=1, default=str))   # before the report: a
        if suite_name in REPORTS:                                                         # report bug loses no run
            results["report"] = REPORTS[suite_name](results, out)
            atomic_write(out / "results.json", json.dumps(results, indent=1, default=str))
        from ..report import write_report
        write_report(out)                    # report.html: the whole run on one self-contained page
    return results


def _write(out: Path, results: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.json", json.dumps(results, indent=1, default=str))


def _grid(p: Prepared, path: Path) -> None:
    """The row's sample grid: the PNG already rendered for the reference cache, else rendered now."""
    if p.grid_png:
        atomic_write(path, p.grid_png)
    elif p.first.x is not None:
        from ..viz import save_grid
        save_grid(p.first.x[:100], path)


def _follow_up(measure: Measure, configs: list[BenchConfig], seeds: list[int]) -> list[dict]:
    """Rows of ``configs`` sampled and scored on ``seeds`` (a suite's follow-up: fresh seeds)."""
    rows, traj = [], {}
    for model in dict.fromkeys(c.model for c in configs):
        for p in measure.model_run([c for c in _order(configs) if c.model == model], seeds, 1, traj):
            rows.append(_row(p, measure.n, rows, {}))
    return rows


def _line(row: dict) -> str:
    extra = f"  traj={row['traj_err']:.4f}" if "traj_err" in row else ""
    if "macs_ratio" in row:
        extra += (f"  MACs/{row['macs_ratio']:.2f} x{row['speedup_vs_baseline']:.2f} "
                  f"dFD={pct_ci(row['fd_change'], row['fd_change_ci'])}")
    acc = row.get("class_acc")
    return (f"{row['model']:12s} {row['config']:28s} nfe={row['nfe']:5d} {pm(row['ms_per_sample'], row['ms_sd'])} "
            f"ms/sample x{row['speedup']:6.1f}  FD={pm(row['fd'], row.get('fd_sd'))}  "
            f"mem={row['mem_asymmetry']:.2f}" + (f"  acc={acc:.3f}" if acc is not None else "") + extra)


def table(results: dict) -> str:
    """The results as a Markdown table: mean ± sd over the seeds, rounded to the spread."""
    k = len(results.get("seeds", [results.get("seed")]))
    head = (f"| model | config | NFE | ms/sample | speed-up | FD (held-out, {k} seed{'s' if k > 1 else ''}) | "
            "FD vs reference (paired, 95% CI) | FD pixel | class acc | memorization (NN train/held-out) |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in results["rows"]:
        acc = "" if r.get("class_acc") is None else f"{100 * r['class_acc']:.1f}%"
        vs = "reference" if r.get("reference") else (pct_ci(r["fd_vs_ref"], r.get("fd_vs_ref_ci"))
                                                     if "fd_vs_ref" in r else "")
        lines.append(f"| {r['model']} | {r['config']} | {r['nfe']} | {pm(r['ms_per_sample'], r.get('ms_sd'))} | "
                     f"{r['speedup']:.1f}x | {pm(r['fd'], r.get('fd_sd'))} | {vs} | "
                     f"{pm(r['fd_pixel'], r.get('fd_pixel_sd'))} | {acc} | {r['mem_asymmetry']:.2f} |")
    for ds, rv in results.get("real_vs_real", {}).items():
        lines.append(f"\nreal vs real ({ds}: {rv['n']} class-balanced training images against held-out, same "
                     f"seeds): FD {pm(rv['fd'], rv.get('fd_sd'))}, FD pixel {pm(rv['fd_pixel'], rv.get('fd_pixel_sd'))}")
    if results.get("report"):
        lines.append("\n" + results["report"])
    return "\n".join(lines)
