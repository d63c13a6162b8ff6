"""The CFG scale sweep behind docs/guidance.md's first tables (FD and class accuracy vs guidance scale,
3 seeds, the bench's scoring). It runs the runner's plain path with the configurations that
``effdiff bench --suite guidance-scales`` runs (same noise, labels and samples):

    OMP_NUM_THREADS=1 python bench/guidance/scale_sweep.py digits-dit 20 OUT_DIR
"""
import sys

import torch

from effdiff.bench.config import BenchConfig
from effdiff.bench.guidance import SCHEDULE, SOLVER, SWEEP
from effdiff.bench.runner import run

torch.set_num_threads(1)
model, steps, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
configs = [BenchConfig(model, f"cfg-{w:g}", SOLVER, SCHEDULE, steps, reference=(w == 1.0), guidance=w) for w in SWEEP]
res = run(configs=configs, suite_name="default", n_seeds=3, repeats=1, threads=1, out=out, grids=True)
for r in res["rows"]:
    print(r["config"], r["nfe"], round(r["fd"], 3), round(r["fd_sd"], 3), r.get("fd_vs_ref"), r.get("fd_vs_ref_ci"),
          round(r["class_acc"], 4), round(r["mem_asymmetry"], 3))
