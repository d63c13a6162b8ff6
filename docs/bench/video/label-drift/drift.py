"""Exploration (docs/video.md, "Where the label is lost"): how the stream's label-accuracy gap is made, clip by clip.
Per clip, the evaluator's per-frame label predictions; a block's label is the majority of its 4 frames. Counts the
clips whose block 1 shows the conditioning label and a later block does not (drift away), and the reverse (drift to),
full sequence against the stream (lookahead 16 + overlap 1), on the diagnostic seeds 789-790.
Usage: python docs/bench/video/label-drift/drift.py (writes drift.json beside it)"""
import json
from collections import Counter
from pathlib import Path

import torch

import effdiff as ed
from effdiff.bench.video import generate, labels_for
from effdiff.video.evaluator import VideoEvaluator

torch.set_num_threads(1)
vm, ev, n = ed.zoo.load("video-dit"), VideoEvaluator.shipped(), 100
rows = {}
for seed in (789, 790):
    for mode, opts in (("full", {}), ("stream", {"lookahead": 16, "overlap": 1})):
        vm.stream_options = dict(opts)
        pred = ev.features(generate(vm, 16, mode, n, seed, 12, "dpmpp-2m", 4.0))[1].argmax(-1)     # [n, 16]
        y = labels_for(n)
        right = torch.stack([pred[:, b:b + 4].mode(1).values for b in range(0, 16, 4)], 1) == y[:, None]
        changes = (torch.stack([pred[:, b:b + 4].mode(1).values for b in range(0, 16, 4)], 1)[:, 1:]
                   != pred[:, :4].mode(1).values[:, None]).any(1)
        acc = (pred == y[:, None]).float().mean(1)
        first = Counter(int((~right[i, 1:]).nonzero()[0]) + 2 for i in range(n) if right[i, 0] and (~right[i, 1:]).any())
        rows[f"{seed} {mode}"] = {"label_acc": round(float(acc.mean()), 4), "block1_right": int(right[:, 0].sum()),
                                  "drift_away": int((right[:, 0] & ~right[:, 1:].all(1)).sum()),
                                  "drift_to": int((~right[:, 0] & right[:, 1:].any(1)).sum()),
                                  "first_wrong_block": {str(k): first[k] for k in sorted(first)},
                                  "clips_block_label_changes": int(changes.sum()),
                                  "label_acc_steady_clips": round(float(acc[~changes].mean()), 4)}
        print(seed, mode, rows[f"{seed} {mode}"], flush=True)
out = Path(__file__).with_name("drift.json")
what = json.loads(out.read_text())["what"] if out.exists() else ""
out.write_text(json.dumps({"what": what, "command": "python docs/bench/video/label-drift/drift.py", "rows": rows},
                          indent=1))
