"""Exploration (one seed; it decides nothing, and its seed is never used to confirm): at 32 frames, does a 12-frame
lookahead solve draw labels and motion as well as the default 16-frame one? By the MACs of the cost bench a 12-frame
solve is about 22% of the 32-frame full sequence (the 16-frame one is 34%), so with it the first frame would be out in
under a quarter of the full-sequence time at 32 frames; an 8-frame solve drew labels worse (seed 900,
../stream-32-lookahead8). Rows: the full sequence, the default stream (lookahead 16, overlap 1, lookahead_blocks 2)
and lookahead 12 keeping its first two or all three blocks; scores as the bench's quality rows (16-frame windows),
label accuracy per 4-frame block.

    taskset -c 0 env OMP_NUM_THREADS=1 python docs/bench/video/stream-32-lookahead12/explore.py 901 100   # -> explore-901.json
"""
import json
import sys
from pathlib import Path

import torch

from effdiff.bench import video as bench
from effdiff.bench.provenance import provenance
from effdiff.video.evaluator import VideoEvaluator
from effdiff.video.sampling import VideoModel

torch.set_num_threads(1)
seed, n = int(sys.argv[1]), int(sys.argv[2])
T = 32
vm, ev = VideoModel.load(None), VideoEvaluator.shipped()
rows = {"full": ("full", {}), "stream L16 K2": ("stream", dict(lookahead=16, overlap=1, lookahead_blocks=2)),
        "stream L12 K2": ("stream", dict(lookahead=12, overlap=1, lookahead_blocks=2)),
        "stream L12 K3": ("stream", dict(lookahead=12, overlap=1, lookahead_blocks=3))}
out = {"what": __doc__.split("\n\n")[0], "seed": seed, "n": n, "frames": T, "provenance": provenance(), "rows": {}}
for name, (mode, opt) in rows.items():
    vm.stream_options = dict(opt)
    x = bench.generate(vm, T, mode, n, seed, 12, "dpmpp-2m", 4.0)
    scores = ev.score(x, bench.labels_for(n))
    _, logits, _ = ev.features(x)
    pred, lab = logits.argmax(-1), bench.labels_for(n).reshape(-1, 1)
    out["rows"][name] = {"options": opt, "scores": scores,
                         "label_acc": round(float((pred == lab).float().mean()), 4),
                         "label_acc_per_block": [round(float((pred[:, b:b + 4] == lab).float().mean()), 3)
                                                 for b in range(0, T, 4)]}
    print(name, out["rows"][name], flush=True)
Path(__file__).with_name(f"explore-{seed}.json").write_text(json.dumps(out, indent=1) + "\n")
