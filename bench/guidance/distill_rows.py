"""Guidance distillation against CFG on the guidance suite's protocol (same solver, steps, noise, labels,
seeds and scoring as ``effdiff bench --suite guidance``): CFG at the model's two scales and a w-input
student (``effdiff train --preset digits-dit-gd --out DIR``) at the same scales, one evaluation per step.

    OMP_NUM_THREADS=1 python bench/guidance/distill_rows.py digits-dit DIR/student OUT_DIR
"""
import sys

import torch

from effdiff.bench import guidance as G
from effdiff.bench.runner import run

torch.set_num_threads(1)
model, student, out = sys.argv[1], sys.argv[2], sys.argv[3]
best, high = G.SCALES[model]
configs = [G._config(model, f"cfg-{best:g}", G._cfg(best), reference=True),
           G._config(model, f"cfg-{high:g}", G._cfg(high), baseline=f"cfg-{best:g}")]
configs += [G._config(model, f"guidance-distill-{w:g}", G._other(student, w), baseline=f"cfg-{w:g}") for w in (best, high)]
res = run(configs=configs, suite_name="guidance", n_seeds=3, repeats=1, threads=1, out=out, grids=True)
print("\n".join(G.rows_table(res)))
