"""Depth pruning (40% of MACs) + an 800-step fine-tune, plain vs LAPTOP-style output distillation from the unpruned
model (prune.finetune(teacher=..., distill=...)). DDIM 10, n=360, labels i%10, selection seeds 100-102 (not the
bench's 0-9), FD vs held-out paired against the unpruned model.  python bench/compress/depth_kd.py [MODEL]"""
import json, sys, time
from pathlib import Path

import torch
torch.set_num_threads(1)
import effdiff as ed
from effdiff import techniques as T
from effdiff.bench.scoring import paired_change, pct_ci
from effdiff.metrics.evaluation import evaluation
from effdiff.prune import DepthPruningConfig, finetune
from effdiff.sampling import randn

model = sys.argv[1] if len(sys.argv) > 1 else "digits-dit"
SEEDS, N = (100, 101, 102), 360
labels = torch.arange(N) % 10
ev = evaluation("digits")


def fds(den, sig):
    return [ev.score(ed.sample(den, randn((N, 1, 8, 8), seed=s) * sig[0].float(), sig, "ddim", cond=labels),
                     labels, seed=s, real_vs_real=False)["fd"] for s in SEEDS]


teacher = ed.zoo.load(model)
sig = ed.timesteps.get("uniform", 10, teacher.process)
ref = fds(teacher, sig)
out = {"fp32": ref}
print(model, "fp32", [round(f, 3) for f in ref], flush=True)
for name, kw in (("plain", {}), ("kd0.5", {"teacher": teacher, "distill": 0.5}), ("kd1.0", {"teacher": teacher, "distill": 1.0})):
    den = ed.zoo.load(model)
    run = T.Run(randn((32, 1, 8, 8), seed=12345) * sig[0].float(), sig, "ddim", labels[:32])
    t = T.get("depth-pruning")
    h = t.apply(den, t.prepare(den, DepthPruningConfig(drop=0.4), run))
    t0 = time.time()
    finetune(den, steps=800, **kw)
    f = fds(den, sig)
    ch, ci = paired_change(f, ref)
    out[name] = {"fd": f, "change": ch, "ci": ci, "finetune_s": round(time.time() - t0, 1), "stats": h.stats.as_dict()}
    print(model, name, [round(x, 3) for x in f], pct_ci(ch, ci), f"{time.time() - t0:.0f}s", flush=True)
    h.remove()
Path("bench-out/compress").mkdir(parents=True, exist_ok=True)
json.dump(out, open(f"bench-out/compress/depth_kd-{model}.json", "w"), indent=1, default=str)
