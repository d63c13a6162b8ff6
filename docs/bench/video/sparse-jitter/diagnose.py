"""Exploration (docs/video.md, "Where the sparse stream jitters"): the ink centre's acceleration |Δ²c| by frame
position within the stream's 4-frame blocks, dense vs the window-2 + sink-1 fine-tune's sparse rows, 128-frame
streams (the plain stream, as the sparse rows run), against real held-out clips; and each row's attention MACs.

    python docs/bench/video/sparse-jitter/diagnose.py SEED N SPARSE_MODEL ROWS_JSON [STREAM_OPTIONS_JSON [TAG]]
    (writes diagnose-SEED[-TAG].json; the stream options apply to every row, default none: the plain stream)
"""
import json
import sys
from pathlib import Path

import torch

from effdiff.bench import video as bench
from effdiff.bench.provenance import provenance
from effdiff.video.evaluator import ink_centres
from effdiff.video.sampling import VideoModel

torch.set_num_threads(1)
seed, n, sparse_model, rows = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
options = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
tag = f"-{sys.argv[6]}" if len(sys.argv) > 6 else ""
T, steps, solver, scale = 128, 12, "dpmpp-2m", 4.0
dense_vm, svm = VideoModel.load(None), VideoModel.load(sparse_model)
dense_vm.stream_options, svm.stream_options = dict(options), dict(options)
block = dense_vm.den.net.config.block_frames


def profile(x):
    """Mean |Δ²c| at frame t (t = 1 .. T-2) grouped by t mod block, and the speed |Δc|."""
    c = ink_centres(x)
    a = (c[:, 2:] - 2 * c[:, 1:-1] + c[:, :-2]).norm(dim=-1).mean(0)            # at frames 1 .. T-2
    pos = torch.arange(1, T - 1) % block
    return {"accel": float(a.mean()), "speed": float((c[:, 1:] - c[:, :-1]).norm(dim=-1).mean()),
            "accel_by_position": [round(float(a[pos == p].mean()), 3) for p in range(block)]}


from effdiff.video.data import moving_digits
out = {"what": __doc__.split("\n\n")[0], "seed": seed, "n": n, "sparse_model": sparse_model, "stream_options": options,
       "provenance": provenance(),
       "rows": {"real": profile(moving_digits("test", 4 * n, T, seed=100 + seed)[0])}}
print("real", out["rows"]["real"], flush=True)
for name, cfg in {"dense": None, **rows}.items():
    vm = dense_vm if cfg is None else svm
    x = bench.with_technique(vm, None if cfg is None else name, cfg,
                             lambda: bench.generate(vm, T, "stream", n, seed, steps, solver, scale))
    c = bench.cost(vm, T, "stream", steps, solver, None if cfg is None else name, cfg, scale)
    out["rows"][name] = {"config": cfg, "attention_macs": c["attention_macs"], **profile(x)}
    print(name, {k: v for k, v in out["rows"][name].items() if k != "config"}, flush=True)
Path(__file__).with_name(f"diagnose-{seed}{tag}.json").write_text(json.dumps(out, indent=1))
