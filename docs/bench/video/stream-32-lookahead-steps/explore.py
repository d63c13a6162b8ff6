"""Exploration (one seed; it decides nothing, and its seed is never used to confirm): at 32 frames, does the default
stream (lookahead 16, overlap 1, lookahead_blocks 2) draw labels and motion as well when its 16-frame lookahead solve
takes fewer steps (lookahead_steps 8, 6 or 4 of the stream's 12 dpmpp-2m steps, the Karras grid resampled)? The first
frame waits for that solve: 34% of the 32-frame full sequence in MACs with 12 steps, so about 23% / 17% / 11% with 8 /
6 / 4. A shorter solve (12 or 8 frames) drew labels worse (seeds 900 and 901). Scores as the bench's quality rows
(16-frame windows), label accuracy per 4-frame block.

    taskset -c 0 env OMP_NUM_THREADS=1 python docs/bench/video/stream-32-lookahead-steps/explore.py 902 100   # -> explore-902.json
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
default = dict(lookahead=16, overlap=1, lookahead_blocks=2)
rows = {"full": ("full", {}), "stream L16 K2": ("stream", default),
        **{f"stream L16 K2 S{s}": ("stream", dict(default, lookahead_steps=s)) for s in (8, 6, 4)}}
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
