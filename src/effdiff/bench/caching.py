"""``effdiff bench --suite caching``: every feature-caching method (and compatible pairs) at 20 and
50 steps with a first-order (DDIM) and a second-order (DPM-Solver++(2M)) solver; MACs ratio,
wall-clock speed-up and FD change against the uncached run of the same solver and steps."""
from __future__ import annotations

from pathlib import Path

import torch

from .. import caching as C
from ..sampling import randn
from .. import early_exit as E
from .runner import REPORTS, SUITE_MODELS, SUITES, BenchConfig


class _Both:
    """Several handles removed together (a composed pair)."""

    def __init__(self, *handles):
        self.handles = handles

    def remove(self):
        for h in reversed(self.handles):
            h.remove()


def _block_caching(threshold: float, blocks=None):
    def setup(den, sigmas, x, labels, solver):
        calib_x = randn(x[:32].shape, seed=12345) * sigmas[0].float()   # calibrate on other noise
        cfg = C.calibrate_block_caching(den, calib_x, sigmas, C.BlockCachingConfig(threshold, blocks=blocks),
                                        solver=solver, cond=labels[:32])
        return C.apply_block_caching(den, cfg)
    return setup


def _l2c(den, sigmas, x, labels, solver):
    router = C.train_l2c_router(den, sigmas=sigmas, solver=solver, num_samples=32, iters=200)
    return C.apply_l2c(den, router)


def _deediff(threshold: float):
    def setup(den, sigmas, x, labels, solver):
        return E.apply_deediff(den, E.train_exit_heads(den, sigmas=sigmas, solver=solver, num_samples=32), threshold)
    return setup


def methods(model: str) -> dict[str, callable]:
    """name -> setup(den, sigmas, x, labels, solver) returning a handle."""
    if model == "digits-dit-xattn":
        return {"tgate": lambda den, sig, *a: C.apply_tgate(den, C.TGATEConfig(gate_step=(len(sig) - 1) // 2))}
    if model == "digits-unet":
        m = {f"deepcache-N{n}": (lambda n: lambda den, *a: C.apply_deepcache(den, C.DeepCacheConfig(interval=n)))(n)
             for n in (2, 3, 5)}
        m["deepcache-nonuniform-N3"] = lambda den, *a: C.apply_deepcache(den, C.DeepCacheConfig(interval=3, nonuniform=True))
        # full steps on 40% of the steps, power-law dense towards the last (low-noise) steps
        m["deepcache-end-dense-40%"] = lambda den, *a: C.apply_deepcache(
            den, C.DeepCacheConfig(nonuniform=True, center=-1, power=1.5, full_fraction=0.4))
        m["block-caching-0.2"] = _block_caching(0.2)
        m["adaptive-0.1"] = lambda den, *a: C.apply_adaptive_cache(den, C.AdaptiveCacheConfig(0.1))
        # a pair on disjoint sites: DeepCache keeps branch 1 live; block caching works inside it
        pair_blocks = ["input_blocks.1", "output_blocks.2"]
        m["deepcache-b1+block-caching"] = lambda den, s, x, l, solver: _Both(
            C.apply_deepcache(den, C.DeepCacheConfig(interval=3, branch=1)),
            _block_caching(0.2, pair_blocks)(den, s, x, l, solver))
        return m
    m = {f"fora-N{n}": (lambda n: lambda den, *a: C.apply_fora(den, C.FORAConfig(interval=n)))(n) for n in (2, 3, 5)}
    m["delta-dit"] = lambda den, *a: C.apply_delta_dit(den, C.DeltaDiTConfig(interval=2, num_blocks=2))
    m["block-caching-0.2"] = _block_caching(0.2)
    m["adaptive-0.1"] = lambda den, *a: C.apply_adaptive_cache(den, C.AdaptiveCacheConfig(0.1))
    m["l2c"] = _l2c
    m["early-exit-ase-1"] = lambda den, *a: E.apply_ase(den, E.ASEConfig(max_drop=1))
    m["early-exit-deediff-0.12"] = _deediff(0.12)
    m["fora-attn-N3+delta-dit"] = lambda den, *a: _Both(
        C.apply_delta_dit(den, C.DeltaDiTConfig(interval=2, num_blocks=2)),
        C.apply_fora(den, C.FORAConfig(interval=3, mlp=False)))
    return m


def _caching(model: str, quick: bool) -> list[BenchConfig]:
    rows = []
    solvers = (("ddim", "uniform"),) if quick else (("ddim", "uniform"), ("dpmpp-2m", "uniform"))
    for steps in ((20,) if quick else (20, 50)):
        for solver, sched in solvers:
            base = f"{solver}-{steps}"
            scale = 2.0 if model == "digits-dit-xattn" else None     # TGATE acts on guidance
            rows.append(BenchConfig(model, base, solver, sched, steps, reference=not rows, guidance=scale))
            for name, setup in methods(model).items():
                if quick and not name.startswith(("deepcache-N3", "fora-N3", "tgate")):
                    continue
                rows.append(BenchConfig(model, f"{base}+{name}", solver, sched, steps, baseline=base, guidance=scale,
                                        setup=(lambda s, solver: lambda den, sig, x, lab: s(den, sig, x, lab, solver))(
                                            setup, solver)))
    return rows


def report(results: dict, out: Path) -> str:
    lines = ["Caching: each method against the uncached run of the same solver and steps (same noise):", "",
             "| model | run | MACs ratio | wall-clock speed-up | FD | FD change |", "|---|---|---:|---:|---:|---:|"]
    for r in results["rows"]:
        if "macs_ratio" in r:
            lines.append(f"| {r['model']} | {r['config']} | {r['macs_ratio']:.2f}x | {r['speedup_vs_baseline']:.2f}x | "
                         f"{r['fd']:.3f} | {100 * r['fd_change']:+.1f}% |")
    text = "\n".join(lines)
    (out / "caching.md").write_text(text + "\n")
    return text


SUITES["caching"] = _caching
SUITE_MODELS["caching"] = ["digits-unet", "digits-dit", "digits-dit-xattn"]
REPORTS["caching"] = report
