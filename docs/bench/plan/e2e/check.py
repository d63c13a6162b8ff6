"""The shipped end-to-end fitted schedules (``e2e:MODEL-SOLVER-STEPS``) against the same solver at the same
step count on the logSNR-uniform schedule, each scored the way the planner certifies (FD change vs the plan
reference heun/karras/40, paired by seed, 95% t-interval) on selection seeds 144-155 (12 seeds, n = 200),
which no fit or search used. Exploration (no decision rides on it): python docs/bench/plan/e2e/check.py MODEL
(one core; writes docs/bench/plan/e2e/check-MODEL.json with the code commit)."""
import json
import subprocess
import sys

import torch

import effdiff as ed
from effdiff.plan import space as S
from effdiff.plan.search import certify
from effdiff.plan.spec import Spec

torch.set_num_threads(1)
SEEDS = range(144, 156)
model = sys.argv[1]
out = {"model": model, "seeds": list(SEEDS), "n": 200, "reference": "heun/karras/40", "budget": "5%",
       "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
       "dirty": bool(subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True).stdout),
       "rows": []}
den = ed.zoo.load(model)
for name in S.fitted_schedules(model):
    pin = S.fitted_for(name)
    if pin is None:
        continue
    solver, steps = pin
    for sched in ("logsnr", name):
        c = certify(den, Spec(solver, steps, sched), "5%", reference=Spec("heun", 40, "karras"), seeds=SEEDS, n=200)
        row = {"model": model, "solver": solver, "steps": steps, "schedule": sched, "holds": c.holds,
               **c.quality.as_dict(), "reason": c.reason}
        print(c.reason, flush=True)
        out["rows"].append(row)
with open(f"docs/bench/plan/e2e/check-{model}.json", "w") as f:
    json.dump(out, f, indent=1)
