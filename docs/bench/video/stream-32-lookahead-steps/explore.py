"""Exploration (one seed; it decides nothing, and its seed is never used to confirm): at 32 frames, does the default
stream (lookahead 16, overlap 1, lookahead_blocks 2) draw labels and motion as well when its 16-frame lookahead solve
takes fewer steps (lookahead_steps 8, 6 or 4 of the stream's 12 dpmpp-2m steps, the Karras grid resampled)? The first
frame waits for that solve: 34% of the 32-frame full sequence in MACs with 12 steps, so about 23% / 17% / 11% with 8 /
6 / 4. A shorter solve (12 or 8 frames) drew labels worse (seeds 900 and 901). Scores as the bench's quality rows
(16-frame windows), label accuracy per 4-frame block.

    taskset -c 0 env OMP_NUM_THREADS=1 python docs/bench/video/stream-32-lookahead-steps/explore.py 902 100   # -> explore-902.json
"""

import sys

from effdiff.bench.video import explore

default = dict(lookahead=16, overlap=1, lookahead_blocks=2)
rows = {"full": ("full", {}), "stream L16 K2": ("stream", default),
        **{f"stream L16 K2 S{s}": ("stream", dict(default, lookahead_steps=s)) for s in (8, 6, 4)}}
explore(__file__, __doc__, rows, int(sys.argv[1]), int(sys.argv[2]), 32)
