"""``effdiff bench --suite distributed``: parallel inference methods on 2 ranks against the
single-rank run of the same solver, steps and guidance, timed interleaved: ms per sample,
speed-up, communication bytes per step (sent per rank), max |x - x_single| for the same seed,
and the FD change with its paired CI.

The suite launches its own ranks (a ``Pool``: this process is rank 0, the others are spawned
with gloo on CPU / NCCL on CUDA) on first use, or uses torchrun's ranks
(``torchrun --nproc-per-node 2 -m effdiff.bench.distributed``). The single-rank rows run with all
of the bench's threads, each of the R ranks with threads / R, so both use the same cores.
"""
from __future__ import annotations

import atexit
from pathlib import Path

from .. import zoo
from ..denoisers import CFG
from ..distributed import Comm, Pool, parallel
from ..distributed.launch import default_threads
from ..metrics import pinned_threads
from ..sampling import sample
from .config import BenchConfig, register_suite, save_table
from .scoring import pct_ci
from .systems import deviation, plain, remember

RANKS = 2
STEPS = 20
GUIDANCE = 2.0   # the CFG rows; every other row runs at the bench's guidance
# row label -> (method, options, solver, guidance, models it applies to)
METHODS = {
    "cfg": ("cfg", {}, "ddim", GUIDANCE, ("unet", "dit")),
    "patch-sync": ("patch", {}, "ddim", None, ("unet", "dit")),
    "patch-stale": ("patch", {"mode": "stale", "warmup": 2}, "ddim", None, ("unet", "dit")),
    "sequence": ("sequence", {}, "ddim", None, ("dit",)),
    "ring": ("ring", {}, "ddim", None, ("dit",)),
    "pipefusion-sync": ("pipefusion", {"mode": "sync"}, "ddim", None, ("dit",)),
    "pipefusion-stale": ("pipefusion", {"warmup": 2}, "ddim", None, ("dit",)),
    "paradigms": ("cfg", {}, "paradigms", None, ("unet", "dit")),   # window evaluations split over ranks
}
QUICK = ("cfg", "patch-sync", "sequence")
SOLVER_OPTIONS = {"paradigms": {"window": 8}}

_pool: Pool | None = None
_cache: dict = {}      # per process: (model, method, options, guidance) -> (denoiser, comm)


def use_pool(pool: Pool | None) -> None:
    """Run the suite's ranks on ``pool`` (torchrun's ranks); None: spawn one on first use."""
    global _pool
    _pool = pool


def _get_pool() -> Pool:
    global _pool
    if _pool is None:
        _pool = Pool(RANKS)
        atexit.register(_pool.close)
    return _pool


def _rank_sample(model, method, options, scale, x, sigmas, labels, seed, solver, threads):
    """On every rank: one generation with the parallel denoiser; returns (result, bytes sent)."""
    key = (model, method, repr(sorted(options.items())), scale)
    if key not in _cache:
        comm = Comm()
        _cache[key] = (parallel(zoo.load(model), method, scale, comm, **options), comm)
    D, comm = _cache[key]
    before = comm.bytes_sent
    with pinned_threads(threads):
        res = sample(D, x, sigmas, solver=solver, cond=labels, seed=seed, return_info=True,
                     **SOLVER_OPTIONS.get(solver, {}))
    return res, comm.bytes_sent - before


class _Parallel:
    """A parallel row: generate() runs on all ranks of the pool and reports bytes and deviation."""

    def __init__(self, model, label, baseline, method, options, solver, scale):
        self.model, self.label, self.baseline = model, label, baseline
        self.method, self.options, self.solver, self.scale = method, options, solver, scale

    def generate(self, den, D, x, sigmas, labels, seed):
        pool = _get_pool()
        scale = self.scale if self.scale is not None else (D.config.scale if isinstance(D, CFG) else 1.0)
        res, sent = pool.run(_rank_sample, self.model, self.method, self.options, scale, x, sigmas, labels, seed,
                             self.solver, default_threads(pool.nprocs))
        res.stats.update(ranks=pool.nprocs, method=self.method, comm_bytes_per_step=sent / max(1, res.steps),
                         max_dev_vs_single=deviation(self.model, self.baseline, seed, res.x))
        remember(self.model, self.label, seed, res.x)
        return res


def _single(model, label, solver, scale, reference=False):
    opts = SOLVER_OPTIONS.get(solver, {})
    return BenchConfig(model, label, solver, "uniform", STEPS, options=opts, reference=reference, guidance=scale,
                       generate=plain(model, label, solver, **opts))


def _distributed(model: str, quick: bool) -> list[BenchConfig]:
    arch = zoo.card(model)["arch"]
    out = []
    singles = {}
    for label, (method, options, solver, scale, archs) in METHODS.items():
        if arch not in archs or (quick and label not in QUICK):
            continue
        base = f"{solver}-{STEPS}" + (f"-cfg{scale:g}" if scale else "") + " (1 rank)"
        if base not in singles:
            singles[base] = _single(model, base, solver, scale, reference=not out)
            out.append(singles[base])
        row = _Parallel(model, f"{label} x{RANKS}", base, method, options, solver, scale)
        out.append(BenchConfig(model, row.label, solver, "uniform", STEPS, options=SOLVER_OPTIONS.get(solver, {}),
                               baseline=base, guidance=scale, generate=row.generate))
    return out


def report(results: dict, out: Path) -> str:
    lines = [f"Parallel inference on {RANKS} ranks against one rank (same solver, steps, guidance and noise; timed "
             "interleaved):", "",
             "| model | run | ms/sample | speed-up vs 1 rank | comm bytes/step (per rank) | max abs dev vs 1 rank | "
             "FD change (95% CI) |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in results["rows"]:
        info = r.get("info") or {}
        if "comm_bytes_per_step" in info:
            dev = info.get("max_dev_vs_single")
            lines.append(f"| {r['model']} | {r['config']} | {r['ms_per_sample']:.3g} | {r['speedup_vs_baseline']:.2f}x | "
                         f"{info['comm_bytes_per_step'] / 1e3:.1f} kB | {'n/a' if dev is None else f'{dev:.2g}'} | "
                         f"{pct_ci(r['fd_change'], r.get('fd_change_ci'))} |")
    return save_table(out, "distributed.md", lines)


register_suite("distributed", _distributed, models=["digits-unet", "digits-dit"], report=report)


def main(argv=None) -> int:
    """``torchrun --nproc-per-node N -m effdiff.bench.distributed [--models ...]``: the suite on torchrun's ranks
    (rank 0 runs the bench, the others follow its pool calls); without torchrun the suite spawns its own."""
    import argparse
    from ..distributed import agree
    from ..distributed.launch import init_from_env, is_writer, serve, world_size
    from .runner import run, table
    p = argparse.ArgumentParser(prog="python -m effdiff.bench.distributed", description=main.__doc__)
    p.add_argument("--models")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out")
    p.add_argument("--samples", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int)
    a = p.parse_args(argv)
    import torch.distributed as dist
    try:
        init_from_env()
        agree(vars(a))
        if not is_writer():
            serve()                    # rank > 0: follow rank 0's pool calls
            return 0
        with Pool(world_size()) as pool:
            use_pool(pool)
            res = run(models=a.models.split(",") if a.models else None, suite_name="distributed", quick=a.quick,
                      out=a.out, n_samples=a.samples, seed=a.seed, repeats=a.repeats)
            use_pool(None)
        print(table(res))
        return 0
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
