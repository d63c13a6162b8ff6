"""Exploration (one seed; it decides nothing, and its seed is never used to confirm): at 32 frames, does an 8-frame
lookahead solve (the stream's first two blocks, kept) draw labels and motion as well as the default 16-frame one?
With it the first frame would cost an 8-frame solve instead of a 16-frame one, under a quarter of the full sequence
at 32 frames. Rows: the full sequence, the default stream (lookahead 16, overlap 1, lookahead_blocks 2) and the same
with lookahead 8; scores as the bench's quality rows (16-frame windows), label accuracy per 4-frame block.

    taskset -c 0 env OMP_NUM_THREADS=1 python docs/bench/video/stream-32-lookahead8/explore.py 900 100   # -> explore-900.json
"""

import sys

from effdiff.bench.video import explore

rows = {"full": ("full", {}), "stream L16 K2": ("stream", dict(lookahead=16, overlap=1, lookahead_blocks=2)),
        "stream L8 K2": ("stream", dict(lookahead=8, overlap=1, lookahead_blocks=2))}
explore(__file__, __doc__, rows, int(sys.argv[1]), int(sys.argv[2]), 32)
