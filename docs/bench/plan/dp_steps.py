"""Exploration (selection seeds 120-125, n=200): dpmpp-2m/3m at few steps on logsnr, the shipped 10-step DP
schedule interpolated, and DP paths fitted at exactly n steps (same cost matrix).
Run: python docs/bench/plan/dp_steps.py digits-unet 3,4,5 dpmpp-2m,dpmpp-3m (core 0, 1 thread)."""
import json, sys, tempfile, time, torch
import effdiff as ed
from effdiff import schedule_opt as so, timesteps, data
from effdiff.plan.runs import measure_on, Sampler
from effdiff.plan.search import default_reference
from effdiff.plan.quality import for_model
from effdiff.plan.spec import Spec
torch.set_num_threads(1)
model = sys.argv[1]
den = ed.zoo.load(model)
card = ed.assets.card(model)
x, y = so._training_split(den, card, model)
lo, hi = so._range(den, None, None)
grid = timesteps.exponential(100, lo, hi)[:-1]
t0 = time.time()
cost = so.ddim_cost(den, x, grid, y, 32, 4, seed=0)
print("cost matrix", round(time.time() - t0, 1), "s", flush=True)
paths = {}
for n in range(3, 11):
    path = so.dp_path(cost, n - 1)
    sig = timesteps.append_zero(grid[path])
    p = f"{tempfile.gettempdir()}/dp-{model}-{n}.json"
    timesteps.save_schedule(p, sig, {"method": "dp", "model": model, "steps": n, "seed": 0, "path": [int(i) for i in path]})
    paths[n] = p
measure = for_model(den, None)
ref = default_reference(den, model)
sm = Sampler(den, None, None)
seeds = list(range(120, 126))
out = {}
for n in [int(a) for a in sys.argv[2].split(",")]:
    for sched in ["logsnr", f"dp:{model}", paths[n]]:
        for solver in sys.argv[3].split(","):
            spec = Spec(solver, n, sched)
            q = measure_on(den, spec, ref, measure, seeds, 200, sampler=sm)
            print(n, solver, sched.split("/")[-1], q.text(), flush=True)
            out[f"{n} {solver} {sched}"] = q.text()
json.dump(out, open(f"docs/bench/plan/dp-steps-{model}.json", "w"), indent=1)
