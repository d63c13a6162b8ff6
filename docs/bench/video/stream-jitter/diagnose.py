"""Exploration (one seed; it decides nothing, and its seed is never used to confirm): where does the dense stream's
extra acceleration come from at 32 frames? The registered confirms put the stream's ink acceleration above the full
sequence's (seeds 903-907: +0.053 [+0.017, +0.089] px/frame² farther from real clips). This measures the ink centre's
|Δ²c| at every frame t = 1 .. 30 of 32-frame clips (the evaluator scores 16-frame windows; here the whole clip), by
position within the 4-frame blocks and by frame, for the full sequence and the stream with its lookahead solve in 8
steps under overlap 0, 1 (the default) and 2, with real held-out clips beside them.

    taskset -c 0 env OMP_NUM_THREADS=1 python docs/bench/video/stream-jitter/diagnose.py 908 100   # -> diagnose-908.json
"""
import json
import sys
from pathlib import Path

import torch

from effdiff.bench import video as bench
from effdiff.bench.provenance import provenance
from effdiff.video.data import moving_digits
from effdiff.video.sampling import VideoModel

torch.set_num_threads(1)
seed, n = int(sys.argv[1]), int(sys.argv[2])
T = 32
vm = VideoModel.load(None)
block = vm.den.net.config.block_frames
base = dict(lookahead=16, lookahead_blocks=2, lookahead_steps=8)
rows = {"full": ("full", {}), **{f"stream O{o}": ("stream", dict(base, overlap=o)) for o in (1, 0, 2)}}
out = {"what": __doc__.split("\n\n")[0], "seed": seed, "n": n, "frames": T, "provenance": provenance(),
       "rows": {"real": bench.accel_profile(moving_digits("test", n, T, seed=100 + seed)[0], block)}}
print("real", out["rows"]["real"], flush=True)
for name, (mode, opt) in rows.items():
    vm.stream_options = dict(opt)
    x = bench.generate(vm, T, mode, n, seed, 12, "dpmpp-2m", 4.0)
    out["rows"][name] = {"options": opt, **bench.accel_profile(x, block)}
    print(name, out["rows"][name], flush=True)
Path(__file__).with_name(f"diagnose-{seed}.json").write_text(json.dumps(out, indent=1) + "\n")
