"""The replication rule on the candidate it was written for: certify mnist-unet's ddpm/trailing/4 at +5%
the way the planner certifies a winner (docs/bench/prereg/plan-replicate-exercise.json), and, if it is
certified, re-measure it on plan-verification seeds 536-(536+k-1).

    taskset -c 0 env OMP_NUM_THREADS=1 python docs/bench/plan/replicate/exercise.py OUT.json
"""
import json
import subprocess
import sys
import time

import torch

import effdiff as ed
from effdiff.plan import search as PS
from effdiff.plan.file import verify, Plan
from effdiff.plan.spec import Spec

torch.set_num_threads(1)
t0 = time.time()
den = ed.zoo.load("mnist-unet")
s = PS.Search(den, "5%", reference=Spec("heun", 40, "karras"), model="mnist-unet", progress=False, log=print)
spec = Spec("ddpm", 4, "trailing")
rec = PS.Record(spec.label(), spec, 4, ("solver",))
q = s.certify(rec)
out = {"candidate": spec.label(), "certified": q.as_dict(), "replication": q.replication(s.budget),
       "holds": q.holds(s.budget), "certified_by_the_rule": s.certified(q),
       "reason": None if s.certified(q) else s.not_certified(rec, q),
       "first_six_replication": PS.Quality(q.measure, values=q.values[:6]).replication(s.budget)}
if out["certified_by_the_rule"]:
    p = Plan(spec=spec, reference=s.reference, budget=s.budget, measure=s.measure.name, weights_sha256=None,
             model="mnist-unet", certified=q.as_dict(), settings={"n": s.set.n}, measure_key={"kind": "eval-fd", "dataset": "mnist"})
    seeds = [PS.SEEDS["verification"] + 36 + i for i in range(len(q.values))]
    v = verify(p, den, seeds=seeds)
    out["verify"] = {"holds": v.holds, "verdict": v.verdict, "quality": v.quality.as_dict()}
out["provenance"] = {"commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
                     "command": sys.argv, "wall_s": round(time.time() - t0)}
json.dump(out, open(sys.argv[1], "w"), indent=1)
print(json.dumps({k: v for k, v in out.items() if k != "certified"}, indent=1))
