"""Selection evidence for longer-trained digits-unet progressive-distillation students: the shipped students
(500 steps per stage) and the 2,000-steps-per-stage ones (presets digits-unet-pd-heun-2k, then -2k-tail, trained
into runs/) against the plan reference (heun/karras/40), each with its paired FD change and 95% interval, on
selection seeds 126-131 (range `selection`), n = 200. Not a certification: the planner certifies on its own fresh
seeds.

    python docs/bench/plan/pd2k_select.py        # -> docs/bench/plan/pd2k-select-126-131.json
"""
import json

import torch

import effdiff as ed
from effdiff.bench.provenance import provenance
from effdiff.plan.search import certify
from effdiff.plan.spec import Spec

STUDENTS = [("digits-unet-pd-2step", 2), ("runs/digits-unet-pd-heun-2k-tail/student-2step", 2),
            ("digits-unet-pd-1step", 1), ("runs/digits-unet-pd-heun-2k-tail/student-1step", 1),
            ("digits-unet-pd-4step", 4), ("runs/digits-unet-pd-heun-2k/student-4step", 4)]


def main() -> None:
    torch.set_num_threads(1)
    den = ed.zoo.load("digits-unet")
    out = {"provenance": provenance(), "seeds": list(range(126, 132)), "n": 200, "reference": "heun/karras/40",
           "rows": {}}
    for name, steps in STUDENTS:
        c = certify(den, Spec("ddim", steps, "student", model=name), "5%", reference=Spec("heun", 40, "karras"),
                    seeds=range(126, 132), n=200)
        out["rows"][name] = str(c)
        print(name, c, flush=True)
    with open("docs/bench/plan/pd2k-select-126-131.json", "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
