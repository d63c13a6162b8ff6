"""Guidance studies behind docs/guidance.md: the CFG scale sweep, a Model Guidance model against CFG, and a
guidance-distilled student against CFG, each on the guidance suite's protocol (same solver, steps, noise,
labels, seeds and scoring as ``effdiff bench --suite guidance``)."""
from __future__ import annotations

import argparse

import torch

from . import register


def _run(configs, suite: str, out: str, n: int | None = None):
    from ..runner import run
    torch.set_num_threads(1)
    kw = {"n_samples": n} if n else {}
    return run(configs=configs, suite_name=suite, n_seeds=3, repeats=1, threads=1, out=out, grids=True, **kw)


@register("guidance-scale-sweep")
def scale_sweep(argv=None) -> None:
    """FD and class accuracy vs CFG scale (the configurations of --suite guidance-scales), 3 seeds."""
    p = argparse.ArgumentParser(prog="guidance-scale-sweep", description=scale_sweep.__doc__)
    p.add_argument("model"), p.add_argument("steps", type=int), p.add_argument("out")
    a = p.parse_args(argv)
    from ..config import BenchConfig
    from ..guidance import SCHEDULE, SOLVER, SWEEP
    configs = [BenchConfig(a.model, f"cfg-{w:g}", SOLVER, SCHEDULE, a.steps, reference=(w == 1.0), guidance=w)
               for w in SWEEP]
    res = _run(configs, "default", a.out)
    for r in res["rows"]:
        print(r["config"], r["nfe"], round(r["fd"], 3), round(r["fd_sd"], 3), r.get("fd_vs_ref"), r.get("fd_vs_ref_ci"),
              round(r["class_acc"], 4), round(r["mem_asymmetry"], 3))


@register("guidance-mg-rows")
def mg_rows(argv=None) -> None:
    """A Model Guidance model (zoo name or exported path) against CFG at the model's best scale."""
    p = argparse.ArgumentParser(prog="guidance-mg-rows", description=mg_rows.__doc__)
    p.add_argument("model"), p.add_argument("mg"), p.add_argument("out"), p.add_argument("n", type=int)
    a = p.parse_args(argv)
    from .. import guidance as G
    best = G.SCALES[a.model][0]
    configs = [G.row_config(a.model, f"cfg-{best:g}", G.cfg_at(best), reference=True),
               G.row_config(a.model, f"model-guidance ({a.mg})", G.other_model(a.mg), baseline=f"cfg-{best:g}")]
    print("\n".join(G.rows_table(_run(configs, "guidance", a.out, a.n))))


@register("guidance-distill-rows")
def distill_rows(argv=None) -> None:
    """CFG at the model's two scales and a w-input guidance-distilled student at the same scales."""
    p = argparse.ArgumentParser(prog="guidance-distill-rows", description=distill_rows.__doc__)
    p.add_argument("model"), p.add_argument("student"), p.add_argument("out")
    a = p.parse_args(argv)
    from .. import guidance as G
    best, high = G.SCALES[a.model]
    configs = [G.row_config(a.model, f"cfg-{best:g}", G.cfg_at(best), reference=True),
               G.row_config(a.model, f"cfg-{high:g}", G.cfg_at(high), baseline=f"cfg-{best:g}")]
    configs += [G.row_config(a.model, f"guidance-distill-{w:g}", G.other_model(a.student, w), baseline=f"cfg-{w:g}")
                for w in (best, high)]
    print("\n".join(G.rows_table(_run(configs, "guidance", a.out))))
