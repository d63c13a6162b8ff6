"""The distill suite's reference row and the students only, on fresh seeds: how the pre-registered 12-seed checks of
docs/distillation.md were run (docs/bench/PREREG-2026-12-01.md).
    python bench/distill/fresh_seeds.py MODEL STUDENT_STEMS(colon-separated) OUT_DIR FIRST_SEED N_SEEDS"""
import os, sys, torch
torch.set_num_threads(1)
model, students, out, seed, nseeds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
os.environ["EFFDIFF_DISTILL_STUDENTS"] = students
from effdiff.bench import distill as D
from effdiff.bench.runner import run, table
rows = [c for c in D._distill(model, quick=False) if c.reference or c.config.split("-")[0] not in ("ddim", "dpmpp")]
print([c.config for c in rows], flush=True)
r = run(models=[model], suite_name="distill", configs=rows, out=out, threads=1, seed=seed, n_seeds=nseeds)
print(table(r)); print(r.get("report", ""))
