"""Distillation studies: the distill suite's reference row and students on fresh seeds (how the
pre-registered 12-seed checks of docs/distillation.md were run, docs/bench/PREREG-2026-12-01.md)."""
from __future__ import annotations

import argparse
import os

import torch

from . import register


@register("distill-fresh-seeds")
def fresh_seeds(argv=None) -> None:
    """The distill suite's reference row and its students (no few-step solver rows) on seeds FIRST..FIRST+N-1."""
    p = argparse.ArgumentParser(prog="distill-fresh-seeds", description=fresh_seeds.__doc__)
    p.add_argument("model")
    p.add_argument("students", help="student path stems, colon-separated (EFFDIFF_DISTILL_STUDENTS)")
    p.add_argument("out")
    p.add_argument("first_seed", type=int)
    p.add_argument("n_seeds", type=int)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    os.environ["EFFDIFF_DISTILL_STUDENTS"] = a.students
    from .. import distill as D
    from ..runner import run, table
    rows = [c for c in D.configs(a.model, quick=False) if c.reference or c.config.split("-")[0] not in ("ddim", "dpmpp")]
    print([c.config for c in rows], flush=True)
    r = run(models=[a.model], suite_name="distill", configs=rows, out=a.out, threads=1, seed=a.first_seed,
            n_seeds=a.n_seeds)
    print(table(r))
    print(r.get("report", ""))
