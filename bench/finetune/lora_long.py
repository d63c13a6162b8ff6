"""LoRA r=4 at 1200 steps vs full fine-tuning (400 steps) over 3 training seeds, as seeds_eval.py."""
import os, time, torch
torch.set_num_threads(1)
os.environ.setdefault("EFFDIFF_FINETUNE_RUNS", "runs/finetune")
import effdiff.bench.finetune as fb
from effdiff.bench.config import BenchConfig
from effdiff.bench.runner import run
fb._add_step_costs = lambda results: None
configs = [c for c in fb.SUITES["finetune"]("digits-unet", False) if c.config in ("base", "full", "lora")]
row = fb._Row("digits-unet", "lora-long", "digits-unet-lora-thick-long", False)
fb._ROWS[("digits-unet", "lora-long")] = row
configs.append(BenchConfig("digits-unet", "lora-long", fb.SOLVER, "uniform", fb.STEPS, baseline="base",
                           setup=row.setup, generate=row.generate))
t = time.time()
res = run(configs=configs, suite_name="finetune", out="bench-out/finetune-lora-long", n_samples=360, threads=1, grids=False)
from effdiff.bench.scoring import t_interval, mean_sd
r = {x["config"]: x for x in res["rows"]}
for k in ("base", "full", "lora", "lora-long"):
    print(k, r[k]["fd_target_per_seed"], r[k]["fd_target"], r[k]["fd_target_ci"], r[k].get("train_wall_s"), r[k].get("train_steps"))
for k in ("lora", "lora-long"):
    d = [a - b for a, b in zip(r[k]["fd_target_per_seed"], r["full"]["fd_target_per_seed"])]
    print(k, "- full paired", mean_sd(d), t_interval(d))
print("wall", round(time.time() - t))
