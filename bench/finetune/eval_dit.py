"""The finetune suite's protocol on the digits-dit runs (training seed 0): DDIM 20 steps (uniform), 360
samples, labels i % 10, noise seeds 0-2; rows base, lora, lora-merged, controlnet (edges of held-out digits).
Also real thick training images vs the held-out thick split at the same n (seeds 0-2)."""
import json, os, time, torch
torch.set_num_threads(1)
os.environ.setdefault("EFFDIFF_FINETUNE_RUNS", "runs/finetune")
import effdiff.bench.finetune as fb
from effdiff.bench.runner import run, table
from effdiff.bench.config import BenchConfig
from effdiff.bench.scoring import mean_sd
from effdiff.finetune import domain
from effdiff.metrics.evaluation import balanced_sample

fb.TRAIN_SEEDS[False] = (0,)
M = "digits-dit"
configs = [c for c in fb.SUITES["finetune"](M, False) if c.config in ("base", "lora", "lora-merged")]
row = fb._Row(M, "controlnet", "digits-dit-controlnet-edges", False)
fb._ROWS[(M, "controlnet")] = row
configs.append(BenchConfig(M, "controlnet", fb.SOLVER, "uniform", fb.STEPS, reference=False, baseline="base",
                           setup=row.setup, generate=row.generate))
print("rows:", [c.config for c in configs], flush=True)
t = time.time()
res = run(configs=configs, suite_name="finetune", out="bench-out/finetune-dit", n_samples=360, threads=1,
          grids=True)
print(table(res))
print(res.get("report", ""))
ev = fb._evaluations()["thick"]
xt, yt = domain("thick", "train")
real = []
for s in (0, 1, 2):
    idx = balanced_sample(yt, torch.full((10,), 36), torch.Generator().manual_seed(s))
    real.append(ev.quality(xt[idx], yt[idx])["fd"])
print("real thick train vs held-out thick, n=360, seeds 0-2:", real, mean_sd(real))
json.dump({"real_thick_fd": real}, open("bench-out/finetune-dit/real_thick.json", "w"))
print("wall", round(time.time() - t))
