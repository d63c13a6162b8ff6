"""What fitting a schedule during a search costs (exploration): ``Search.fit_schedules`` for AYS and DP on
mnist-ldm-dit (the zoo ships no fit for it), on 128 reference samples, one core.
python docs/bench/plan/fit_in_search.py -> docs/bench/plan/fit-in-search-mnist-ldm-dit.json with the commit."""
import json
import subprocess
import time

import torch

import effdiff as ed
from effdiff.plan import search as PS, space as S

torch.set_num_threads(1)
model = "mnist-ldm-dit"
den = ed.zoo.load(model)
s = PS.Search(den, "5%", space=S.Space(fit=("ays", "dp")), progress=False, model=model, log=print)
t0 = time.perf_counter()
s.fit_schedules()
out = {"model": model, "total_s": round(time.perf_counter() - t0, 1), "fitted": s.fitted_info,
       "note": "seconds of the first fit include sampling the 128 reference samples, which the second reuses",
       "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()}
with open(f"docs/bench/plan/fit-in-search-{model}.json", "w") as f:
    json.dump(out, f, indent=1)
