"""Exploration (one seed; it decides nothing, and its seed is never used to confirm): does carrying each block's first
frame from the previous solve (generate_stream's carry) remove the stream's extra acceleration at block boundaries?
The diagnostic on seed 908 (../stream-jitter) put it at each block's first frame: |Δ²c| 2.12 there against 1.86-1.96
at the other positions (overlap 1; the full sequence 1.89-2.00). Rows at 32 frames: the full sequence, and the stream
with lookahead 16, two kept blocks and the solve in 8 steps under overlap 1, overlap 1 + carry and overlap 2 + carry;
the bench's quality scores (16-frame windows), label accuracy per block, and |Δ²c| by frame and by block position.

    taskset -c 0 env OMP_NUM_THREADS=1 python docs/bench/video/stream-carry/explore.py 909 100   # -> explore-909.json
"""

import sys

from effdiff.bench.video import explore

base = dict(lookahead=16, lookahead_blocks=2, lookahead_steps=8)
rows = {"full": ("full", {}), "stream O1": ("stream", dict(base, overlap=1)),
        "stream O1 carry": ("stream", dict(base, overlap=1, carry=1)),
        "stream O2 carry": ("stream", dict(base, overlap=2, carry=1))}
explore(__file__, __doc__, rows, int(sys.argv[1]), int(sys.argv[2]), 32, profile=True)
