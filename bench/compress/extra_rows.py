"""SVDQuant and LoRA-QAT W4A8 rows beside the fp32 reference, the compress suite's protocol (DDIM 10, n=360,
seeds 0-9, same noise, paired CI), through bench.compress._Row; run after the pre-registered suite."""
import sys, torch
torch.set_num_threads(1)
from effdiff.bench import compress as C
from effdiff.bench.runner import BenchConfig, run, table
model, out = sys.argv[1], sys.argv[2]
PARTS = {k: C.ROWS[k] for k in ("svdquant-W4A8", "qat-W4A8")}
rows = [BenchConfig(model, "ddim-10", "ddim", "uniform", 10, reference=True)]
for label, parts in PARTS.items():
    r = C._Row(parts, "ddim", model)
    rows.append(BenchConfig(model, f"ddim-10+{label}", "ddim", "uniform", 10, baseline="ddim-10", setup=r.setup,
                            generate=r.generate))
res = run(models=[model], suite_name="compress", configs=rows, out=out, threads=1, n_seeds=10)
print(table(res))
