"""Is digits-dit's 1-step DMD student near enough to the plan reference for a +5% certificate with students (3x)?
Scored the way the planner certifies (FD change vs heun/karras/40, paired by seed, 95% t-interval, n = 200) on
selection seeds 186-199 (14 seeds no search used), beside the plain dpmpp-2m/logsnr/10 the +5% plans build on.
Exploration (no decision rides on it): python docs/bench/plan/students/dmd_dit.py (one core; writes
docs/bench/plan/students/dmd-digits-dit.json with the commit)."""
import json
import subprocess

import torch

import effdiff as ed
from effdiff.plan.search import certify
from effdiff.plan.spec import Spec

torch.set_num_threads(1)
SEEDS = range(186, 200)
model = "digits-dit"
out = {"model": model, "seeds": list(SEEDS), "n": 200, "reference": "heun/karras/40", "budget": "5%",
       "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
       "dirty": bool(subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True).stdout),
       "rows": []}
den = ed.zoo.load(model)
for spec in (Spec("ddim", 1, "student", model="digits-dit-dmd-1step"), Spec("dpmpp-2m", 10, "logsnr")):
    c = certify(den, spec, "5%", reference=Spec("heun", 40, "karras"), seeds=SEEDS, n=200)
    print(c.reason, flush=True)
    out["rows"].append({"spec": spec.label(), "holds": c.holds, **c.quality.as_dict(), "reason": c.reason,
                        "replication": c.quality.replication(0.05)})
with open(f"docs/bench/plan/students/dmd-{model}.json", "w") as f:
    json.dump(out, f, indent=1)
