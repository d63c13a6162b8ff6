"""A Model Guidance model (a zoo name or an exported model path) against CFG at the model's best scale, on
the guidance suite's protocol (same solver, steps, noise, labels, seeds and scoring):

    OMP_NUM_THREADS=1 python bench/guidance/mg_rows.py mnist-ldm-dit runs/mnist-ldm-dit-mg/model OUT_DIR 200
"""
import sys

import torch

from effdiff.bench import guidance as G
from effdiff.bench.runner import run

torch.set_num_threads(1)
model, mg, out, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
best = G.SCALES[model][0]
configs = [G._config(model, f"cfg-{best:g}", G._cfg(best), reference=True),
           G._config(model, f"model-guidance ({mg})", G._other(mg), baseline=f"cfg-{best:g}")]
res = run(configs=configs, suite_name="guidance", n_samples=n, n_seeds=3, repeats=1, threads=1, out=out, grids=True)
print("\n".join(G.rows_table(res)))
