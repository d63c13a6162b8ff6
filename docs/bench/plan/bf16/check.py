"""bf16 autocast against fp32 on the same solver configuration, paired by seed: FD change of the bf16 samples with
the fp32 samples as the reference (95% t-interval), on selection seeds 162-173 (12 seeds, n = 200), which no search
used. Exploration (no decision rides on it; the planner certifies bf16 itself on its fresh seeds):
python docs/bench/plan/bf16/check.py MODEL (one core; writes docs/bench/plan/bf16/check-MODEL.json with the code
commit)."""
import json
import subprocess
import sys

import torch

import effdiff as ed
from effdiff.plan.search import certify
from effdiff.plan.spec import Spec

torch.set_num_threads(1)
SEEDS = range(162, 174)
BASE = {"digits-unet": Spec("dpmpp-2m", 6, "logsnr"), "digits-dit": Spec("dpmpp-2m", 10, "logsnr")}
model = sys.argv[1]
base = BASE[model]
out = {"model": model, "seeds": list(SEEDS), "n": 200, "reference": base.label(), "budget": "5%",
       "machine": {"cpu_bf16": ed.systems.native_low_precision("cpu")},
       "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
       "dirty": bool(subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True).stdout)}
den = ed.zoo.load(model)
c = certify(den, base.use(("autocast", {"dtype": "bfloat16"})), "5%", reference=base, seeds=SEEDS, n=200)
print(c.reason, flush=True)
out["bf16_vs_fp32"] = {"holds": c.holds, **c.quality.as_dict(), "reason": c.reason}
with open(f"docs/bench/plan/bf16/check-{model}.json", "w") as f:
    json.dump(out, f, indent=1)
