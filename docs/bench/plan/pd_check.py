"""Digits-unet progressive-distillation students vs the plan reference (heun/karras/40) on verification seeds
506-517, n = 360 (python docs/bench/plan/pd_check.py, run on core 1 of the 2-core machine): can they hold +5%?"""
import json, torch, effdiff as ed
from effdiff.plan.search import certify
from effdiff.plan.spec import Spec
torch.set_num_threads(1)
den = ed.zoo.load("digits-unet")
out = {}
for name, steps in [("digits-unet-pd-2step", 2), ("digits-unet-pd-1step", 1)]:
    c = certify(den, Spec("ddim", steps, "student", model=name), "5%", reference=Spec("heun", 40, "karras"),
                seeds=range(506, 518), n=360)
    print(name, c.reason if hasattr(c, "reason") else c, flush=True)
    out[name] = str(c)
json.dump(out, open("docs/bench/plan/pd-check-506-517.json", "w"), indent=1)
