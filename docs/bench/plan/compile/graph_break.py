"""What the compile graph break at the CPU label check cost (exploration, not a bench row): one bf16 forward of 200
inputs through torch.compile, with the pre-76c24c3 check (it reads the label values under dynamo: a graph break) and
with the current one (eager only), timed side by side in 7 interleaved rounds of 6 calls, best round, one thread.
python docs/bench/plan/compile/graph_break.py (on an otherwise idle core) -> graph-break.json with the commit."""
import json
import subprocess
import time

import torch

import effdiff as ed
from effdiff.models import layers
from effdiff.sites import network
torch.set_num_threads(1)
new_check = layers.check_inputs
def old_check(x, nl, cl, ic, nc):          # the pre-76c24c3 behaviour: read the label values under dynamo too
    out = new_check(x, nl, cl, ic, nc)
    if cl is not None and nc and x.shape[0] > 0:
        lo, hi = int(out[1].min()), int(out[1].max())
    return out
import effdiff.models.dit as D, effdiff.models.unet as U
res = {}
for model in ("digits-unet", "digits-dit"):
    net = network(ed.zoo.load(model)).eval()
    x = torch.randn(200, 1, 8, 8); t = torch.rand(200) * 2; y = torch.arange(200) % 10
    fns = {}
    for name, chk in (("old", old_check), ("new", new_check)):
        D.check_inputs = U.check_inputs = chk
        torch._dynamo.reset()
        c = torch.compile(net)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            for _ in range(3): c(x, t, y)
        fns[name] = c
    times = {k: [] for k in fns}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for r in range(7):
            for k, c in fns.items():
                D.check_inputs = U.check_inputs = old_check if k == "old" else new_check
                t0 = time.perf_counter()
                for _ in range(6): c(x, t, y)
                times[k].append((time.perf_counter() - t0) / 6 / 200 * 1000)
    res[model] = {k: min(v) for k, v in times.items()}
    print(model, {k: round(min(v), 3) for k, v in times.items()}, "ratio old/new", round(min(times["old"]) / min(times["new"]), 3), flush=True)
out = {"ms_per_sample_best_round": res, "n": 200, "threads": 1, "rounds": 7, "calls_per_round": 6,
       "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()}
with open("docs/bench/plan/compile/graph-break.json", "w") as f:
    json.dump(out, f, indent=1)
