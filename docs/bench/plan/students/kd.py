"""Developing a student for the +5% plan with students (issue 22's 3x line; MODEL digits-unet or digits-dit): candidate students
scored the way the planner certifies (FD change vs the plan reference heun/karras/40, paired by seed, 95%
t-interval, n = 200) on seeds of the registered range ``student-selection`` (3400-3499), never used to
certify. Exploration: the pick it informs is certified later, in a registered plan run, on fresh seeds.

    python docs/bench/plan/students/kd.py OUT.json MODEL SEED0 NSEEDS STUDENT [STUDENT ...]

STUDENT: a zoo name or a checkpoint path stem; each is sampled with its own grid and solver (ddim).
Writes OUT.json with the commit, dirty flag and one row per student (its per-seed values included).
"""
import json
import sys

import torch

import effdiff as ed
from effdiff.bench.provenance import code_state
from effdiff.plan.search import certify
from effdiff.plan.spec import Spec
from effdiff.seeds import STUDENT_SELECTION

torch.set_num_threads(1)
out_path, model, s0, k, names = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
seeds = STUDENT_SELECTION.seeds(k, offset=s0 - STUDENT_SELECTION.start)     # raises outside the range
code = code_state()
out = {"model": model, "seeds": seeds, "n": 200, "reference": "heun/karras/40", "budget": "5%",
       "commit": code["commit"], "dirty": code["dirty"], "rows": []}
den = ed.zoo.load(model)
for name in names:
    st = ed.distill.load(name) if "/" in name else ed.zoo.load(name)
    spec = Spec(st.spec.solver, st.spec.steps, "student", model=name)
    c = certify(den, spec, "5%", reference=Spec("heun", 40, "karras"), seeds=seeds, n=200)
    print(c.reason, flush=True)
    out["rows"].append({"student": name, "steps": st.spec.steps, "holds": c.holds, **c.quality.as_dict(),
                        "reason": c.reason, "replication": c.quality.replication(0.05)})
with open(out_path, "w") as f:
    json.dump(out, f, indent=1)
