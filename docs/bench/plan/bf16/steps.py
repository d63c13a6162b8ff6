"""Where a +5% certificate could come from on digits-unet: the plain solver at 6 and 8 steps, fp32 and bf16, each
scored the way the planner certifies (FD change vs the plan reference heun/karras/40, paired by seed, 95% t-interval)
on selection seeds 174-185 (12 seeds, n = 200), which no search used. Exploration (no decision rides on it):
python docs/bench/plan/bf16/steps.py (one core; writes docs/bench/plan/bf16/steps-digits-unet.json with the commit)."""
import json
import subprocess

import torch

import effdiff as ed
from effdiff.plan.search import certify
from effdiff.plan.spec import Spec

torch.set_num_threads(1)
SEEDS = range(174, 186)
model = "digits-unet"
out = {"model": model, "seeds": list(SEEDS), "n": 200, "reference": "heun/karras/40", "budget": "5%",
       "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
       "dirty": bool(subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True).stdout),
       "rows": []}
den = ed.zoo.load(model)
for steps in (6, 8):
    base = Spec("dpmpp-2m", steps, "logsnr")
    for spec in (base, base.use(("autocast", {"dtype": "bfloat16"}))):
        c = certify(den, spec, "5%", reference=Spec("heun", 40, "karras"), seeds=SEEDS, n=200)
        print(c.reason, flush=True)
        out["rows"].append({"spec": spec.label(), "holds": c.holds, **c.quality.as_dict(), "reason": c.reason})
with open(f"docs/bench/plan/bf16/steps-{model}.json", "w") as f:
    json.dump(out, f, indent=1)
