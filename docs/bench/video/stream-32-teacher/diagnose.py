"""Diagnostic (five seeds, 920-924; it decides nothing, and its seeds are never used to confirm): is the stream's label
accuracy loss at 32 frames made by sampling a block on earlier blocks (the block-causal conditional), or by the
stream's own earlier blocks (its errors carried on)? Every 32-frame comparison of the stream that keeps a 16-frame
lookahead solve's first two blocks drew labels worse than the full sequence: pooled over their 25 seeds -0.010
[-0.016, -0.005] (../stream-32-posthoc). Rows at 32 frames: the full sequence; the stream (lookahead 16 solved in 8
steps, two kept blocks, no overlap frame); and the same blocks sampled on the full solve's own earlier blocks
(teacher-forced, no overlap frame: block 1 is the full solve's, each later block is sampled from its own noise against
the full solve's blocks before it). The bench's quality scores (16-frame windows) and label accuracy per block.

    taskset -c 1 env OMP_NUM_THREADS=1 python docs/bench/video/stream-32-teacher/diagnose.py SEED 100   # -> explore-SEED.json
    python docs/bench/video/stream-32-teacher/diagnose.py --summary   # -> summary.json: per-block gaps over the seeds

The summary reads the streamed blocks 3-8 (frames 9-32; block 1 is the full solve's in the teacher-forced row, and
blocks 1-2 are the lookahead solve's in the stream): per seed the mean label accuracy over those blocks minus the full
sequence's, and its 95% t-interval over the seeds.
"""

import json
import sys
from pathlib import Path

from effdiff.metrics.stats import mean_sd, t_interval

HERE = Path(__file__).parent
ROWS = {"full": ("full", {}),
        "stream O0": ("stream", dict(lookahead=16, lookahead_blocks=2, lookahead_steps=8, overlap=0)),
        "teacher O0": ("teacher", dict(overlap=0))}


def summary() -> dict:
    runs = {int(p.stem.split("-")[1]): json.loads(p.read_text()) for p in sorted(HERE.glob("explore-*.json"))}
    out = {"seeds": sorted(runs), "blocks": "3-8", "rows": {}}
    for name in ROWS:
        if name == "full":
            continue
        gap = {}
        for key, sl in (("streamed blocks 3-8", slice(2, 8)), ("all blocks", slice(0, 8))):
            per_seed = [sum(r["rows"][name]["label_acc_per_block"][sl]) / len(range(8)[sl])
                        - sum(r["rows"]["full"]["label_acc_per_block"][sl]) / len(range(8)[sl]) for r in runs.values()]
            gap[key] = {"mean": mean_sd(per_seed)[0], "ci95": t_interval(per_seed), "per_seed": per_seed}
        per_block = [mean_sd([r["rows"][name]["label_acc_per_block"][b] for r in runs.values()])[0] for b in range(8)]
        out["rows"][name] = {"label_acc_gap_to_full": gap, "label_acc_per_block": per_block}
        print(name, {k: (round(v["mean"], 4), [round(c, 4) for c in v["ci95"]]) for k, v in gap.items()})
    out["rows"]["full"] = {"label_acc_per_block": [mean_sd([r["rows"]["full"]["label_acc_per_block"][b]
                                                             for r in runs.values()])[0] for b in range(8)]}
    (HERE / "summary.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    if sys.argv[1:] == ["--summary"]:
        summary()
    else:
        from effdiff.bench.video import explore
        explore(__file__, __doc__, ROWS, int(sys.argv[1]), int(sys.argv[2]), 32)
