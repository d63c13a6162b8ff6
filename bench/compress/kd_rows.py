"""The depth-40%+kd row beside the fp32 reference (compress-suite protocol, seeds 0-9), run after the pre-registered
suite: python bench/compress/kd_rows.py MODEL OUT_DIR"""
import sys, torch
torch.set_num_threads(1)
from effdiff.bench import compress as C
from effdiff.bench.runner import BenchConfig, run, table
model, out = sys.argv[1], sys.argv[2]
rows = [BenchConfig(model, "ddim-10", "ddim", "uniform", 10, reference=True)]
r = C._Row(C.ROWS["depth-40%+kd"], "ddim", model, kd=True)
rows.append(BenchConfig(model, "ddim-10+depth-40%+kd", "ddim", "uniform", 10, baseline="ddim-10", setup=r.setup, generate=r.generate))
print(table(run(models=[model], suite_name="compress", configs=rows, out=out, threads=1, n_seeds=10)))
