"""Some compress-suite rows beside the fp32 reference, with the suite's protocol (DDIM 10, n=360, seeds 0-9, same
noise, paired CI): how the SVDQuant / QAT rows (svdquant-W4A8 qat-W4A8) and the depth-40%+kd row were run after the
pre-registered suite.  python bench/compress/rows.py MODEL OUT_DIR LABEL [LABEL ...]"""
import sys

import torch
torch.set_num_threads(1)
from effdiff.bench import compress as C
from effdiff.bench.runner import run, table

model, out, labels = sys.argv[1], sys.argv[2], sys.argv[3:]
print(table(run(models=[model], suite_name="compress", configs=C.configs(model, labels), out=out, threads=1,
                n_seeds=10)))
