"""How close KD students are to the teacher's sampler, sample by sample (development diagnostics for the students of
docs/distillation.md, "KD"; not a quality claim): for each student, on N new noises (seed 777777, never a pairs
or plan seed) and on the first N training pairs, the paired mean squared error of its DDIM solve against the
teacher's heun/karras/40 sample from the same noise; on the new noises also the share of the squared error carried
by the worst 5% of samples, and how often the evaluation network classifies the student's sample as another digit
than the teacher's.

    python docs/bench/plan/students/paired_error.py OUT.json TEACHER PAIRS_DIR STUDENT [STUDENT ...]

STUDENT: a zoo name or a checkpoint path stem. Writes OUT.json with the commit and dirty flag.
"""
import json
import sys

import torch

from effdiff import timesteps
from effdiff.bench.provenance import code_state
from effdiff.distill import pairs as P
from effdiff.distill.kd import unroll
from effdiff.distill.loop import load_teacher
from effdiff.metrics import evaluation
from effdiff.plan.quality import dataset_of
from effdiff.sampling import randn, sample, seeds_for

torch.set_num_threads(1)
out_path, teacher_name, pairs_dir, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
N, SEED = 1024, 777777
teacher = load_teacher(teacher_name)
ev = evaluation(dataset_of(teacher))
z, x, y = P.load(pairs_dir)
z, x, y = z[:N], x[:N], None if y is None else y[:N]
sig = timesteps.get("karras", 40, teacher.process)
zs = randn((N, *z.shape[1:]), seeds=seeds_for(SEED, N))
ys = torch.arange(N) % teacher.cond_classes if teacher.cond_classes else None
xt = sample(teacher, zs * float(sig[0]), sig, "heun", ys, seeds=seeds_for(SEED, N))
code = code_state()
out = {"teacher": teacher_name, "pairs": pairs_dir, "n": N, "new_noise_seed": SEED, "reference": "heun/karras/40",
       "commit": code["commit"], "dirty": code["dirty"], "rows": []}
with torch.no_grad():
    label_t = ev.net(xt).argmax(1)
    for name in names:
        st = load_teacher(name)
        train = ((unroll(st, z, y) - x) ** 2).flatten(1).mean(1)
        xs = unroll(st, zs, ys)
        err = ((xs - xt) ** 2).flatten(1).mean(1)
        worst = err.sort().values[-max(1, N // 20):].sum() / err.sum()
        label_s = ev.net(xs).argmax(1)
        row = {"student": name, "mse_pairs": train.mean().item(), "mse_new_noise": err.mean().item(),
               "worst5_share": worst.item(), "other_digit": (label_s != label_t).float().mean().item()}
        if ys is not None:
            row["label_agreement"] = {"teacher": (label_t == ys).float().mean().item(),
                                      "student": (label_s == ys).float().mean().item()}
        print(json.dumps(row), flush=True)
        out["rows"].append(row)
with open(out_path, "w") as f:
    json.dump(out, f, indent=1)
