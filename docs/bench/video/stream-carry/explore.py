"""Exploration (one seed; it decides nothing, and its seed is never used to confirm): does carrying each block's first
frame from the previous solve (generate_stream's carry) remove the stream's extra acceleration at block boundaries?
The diagnostic on seed 908 (../stream-jitter) put it at each block's first frame: |Δ²c| 2.12 there against 1.86-1.96
at the other positions (overlap 1; the full sequence 1.89-2.00). Rows at 32 frames: the full sequence, and the stream
with lookahead 16, two kept blocks and the solve in 8 steps under overlap 1, overlap 1 + carry and overlap 2 + carry;
the bench's quality scores (16-frame windows), label accuracy per block, and |Δ²c| by frame and by block position.

    taskset -c 0 env OMP_NUM_THREADS=1 python docs/bench/video/stream-carry/explore.py 909 100   # -> explore-909.json
"""
import json
import sys
from pathlib import Path

import torch

from effdiff.bench import video as bench
from effdiff.bench.provenance import provenance
from effdiff.video.evaluator import VideoEvaluator, ink_centres
from effdiff.video.sampling import VideoModel

torch.set_num_threads(1)
seed, n = int(sys.argv[1]), int(sys.argv[2])
T = 32
vm, ev = VideoModel.load(None), VideoEvaluator.shipped()
block = vm.den.net.config.block_frames


def profile(x):
    """Mean |Δ²c| at frame t (t = 1 .. T-2): by t mod block and per frame."""
    c = ink_centres(x)
    a = (c[:, 2:] - 2 * c[:, 1:-1] + c[:, :-2]).norm(dim=-1).mean(0)
    pos = torch.arange(1, T - 1) % block
    return {"accel_whole_clip": round(float(a.mean()), 4),
            "accel_by_position": [round(float(a[pos == p].mean()), 3) for p in range(block)],
            "accel_by_frame": [round(float(v), 3) for v in a]}


base = dict(lookahead=16, lookahead_blocks=2, lookahead_steps=8)
rows = {"full": ("full", {}), "stream O1": ("stream", dict(base, overlap=1)),
        "stream O1 carry": ("stream", dict(base, overlap=1, carry=1)),
        "stream O2 carry": ("stream", dict(base, overlap=2, carry=1))}
out = {"what": __doc__.split("\n\n")[0], "seed": seed, "n": n, "frames": T, "provenance": provenance(), "rows": {}}
for name, (mode, opt) in rows.items():
    vm.stream_options = dict(opt)
    x = bench.generate(vm, T, mode, n, seed, 12, "dpmpp-2m", 4.0)
    _, logits, _ = ev.features(x)
    pred, lab = logits.argmax(-1), bench.labels_for(n).reshape(-1, 1)
    out["rows"][name] = {"options": opt, "scores": ev.score(x, bench.labels_for(n)),
                         "label_acc_per_block": [round(float((pred[:, b:b + 4] == lab).float().mean()), 3)
                                                 for b in range(0, T, 4)], **profile(x)}
    print(name, out["rows"][name], flush=True)
Path(__file__).with_name(f"explore-{seed}.json").write_text(json.dumps(out, indent=1) + "\n")
