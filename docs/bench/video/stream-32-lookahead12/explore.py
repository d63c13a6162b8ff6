"""Exploration (one seed; it decides nothing, and its seed is never used to confirm): at 32 frames, does a 12-frame
lookahead solve draw labels and motion as well as the default 16-frame one? By the MACs of the cost bench a 12-frame
solve is about 22% of the 32-frame full sequence (the 16-frame one is 34%), so with it the first frame would be out in
under a quarter of the full-sequence time at 32 frames; an 8-frame solve drew labels worse (seed 900,
../stream-32-lookahead8). Rows: the full sequence, the default stream (lookahead 16, overlap 1, lookahead_blocks 2)
and lookahead 12 keeping its first two or all three blocks; scores as the bench's quality rows (16-frame windows),
label accuracy per 4-frame block.

    taskset -c 0 env OMP_NUM_THREADS=1 python docs/bench/video/stream-32-lookahead12/explore.py 901 100   # -> explore-901.json
"""

import sys

from effdiff.bench.video import explore

rows = {"full": ("full", {}), "stream L16 K2": ("stream", dict(lookahead=16, overlap=1, lookahead_blocks=2)),
        "stream L12 K2": ("stream", dict(lookahead=12, overlap=1, lookahead_blocks=2)),
        "stream L12 K3": ("stream", dict(lookahead=12, overlap=1, lookahead_blocks=3))}
explore(__file__, __doc__, rows, int(sys.argv[1]), int(sys.argv[2]), 32)
