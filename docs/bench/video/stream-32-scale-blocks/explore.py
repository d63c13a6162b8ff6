"""Exploration (two seeds, 930 and 931; it decides nothing, and its seeds are never used to confirm): does guiding the
streamed blocks harder (generate_stream's scale_blocks) win back the stream's label accuracy at 32 frames? A streamed
block follows its context's digit, and the teacher-forced diagnostic (../stream-32-teacher) put most of the 32-frame
label loss in the stream carrying its own blocks on; guidance pulls each block toward its label against a null-label
branch that sees the same frames. Rows at 32 frames: the full sequence at guidance 4, and the stream without an overlap
frame (lookahead 16 in 8 steps, two kept blocks, guidance 4) with its streamed blocks at guidance 4, 5 and 6; the
bench's quality scores (16-frame windows), label accuracy per block, and the acceleration profile.

    taskset -c 0 env OMP_NUM_THREADS=1 python docs/bench/video/stream-32-scale-blocks/explore.py 930 100   # -> explore-930.json
    taskset -c 1 env OMP_NUM_THREADS=1 python docs/bench/video/stream-32-scale-blocks/explore.py 931 100
"""

import sys

from effdiff.bench.video import explore

base = dict(lookahead=16, lookahead_blocks=2, lookahead_steps=8, overlap=0)
rows = {"full": ("full", {}), "stream O0": ("stream", base),
        "stream O0 blocks w5": ("stream", dict(base, scale_blocks=5.0)),
        "stream O0 blocks w6": ("stream", dict(base, scale_blocks=6.0))}
explore(__file__, __doc__, rows, int(sys.argv[1]), int(sys.argv[2]), 32, profile=True)
