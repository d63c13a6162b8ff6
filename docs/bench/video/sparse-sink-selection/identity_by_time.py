"""Diagnostic (not deciding): where along a streamed 128-frame clip AdaSpa's identity loss appears. Dense vs
adaspa density 0.375 + min_frames 4 on the selection seeds 700-702 (n clips each): share of frames showing the
clip's majority digit per 16-frame window, and the digit switches per clip (evaluator's frame classifier).
Usage: python identity_by_time.py N OUT.json"""
import json, sys, torch
from effdiff.bench.video import generate, labels_for, with_technique
from effdiff.video.evaluator import VideoEvaluator
from effdiff.video.sampling import VideoModel

torch.set_num_threads(1)
vm, ev = VideoModel.load(None), VideoEvaluator.shipped()
vm.stream_options = {}          # the plain stream, as when this ran (the card's stream defaults came later)
n, rows = int(sys.argv[1]), {"dense": None, "adaspa:d375m4": {"density": 0.375, "min_frames": 4}}
out = {"n": n, "seeds": [700, 701, 702], "rows": {}}
for name, cfg in rows.items():
    agree, switches = [], []
    for s in out["seeds"]:
        x = with_technique(vm, None if cfg is None else name, cfg, lambda: generate(vm, 128, "stream", n, s, 12, "dpmpp-2m", 4.0))
        pred = ev.features(x)[1].argmax(-1)                               # [n, 128]
        agree.append((pred == pred.mode(1).values[:, None]).float())
        switches.append((pred[:, 1:] != pred[:, :-1]).float().sum(1))
    a = torch.cat(agree)
    out["rows"][name] = {"identity": float(a.mean()), "by_window": [round(float(w), 4) for w in a.reshape(len(a), 8, 16).mean((0, 2))],
                         "switches_per_clip": float(torch.cat(switches).mean())}
    print(name, json.dumps(out["rows"][name]), flush=True)
json.dump(out, open(sys.argv[2], "w"), indent=1)
