"""Diagnostic (ten seeds, 920-924 and 932-936; it decides nothing, and its seeds are never used to confirm): is the
stream's label accuracy loss at 32 frames made by sampling a block on earlier blocks (the block-causal conditional),
or by the stream's own earlier blocks (its errors carried on)? Every 32-frame comparison of the stream that keeps a
16-frame lookahead solve's first two blocks drew labels worse than the full sequence: pooled over their 25 seeds
-0.010 [-0.016, -0.005] (../stream-32-posthoc). Rows at 32 frames: the full sequence; the stream (lookahead 16 solved
in 8 steps, two kept blocks, no overlap frame); and the same blocks sampled on the full solve's own earlier blocks
(teacher-forced, no overlap frame: block 1 is the full solve's, each later block is sampled from its own noise against
the full solve's blocks before it). The bench's quality scores (16-frame windows) and label accuracy per block.

    taskset -c 1 env OMP_NUM_THREADS=1 python docs/bench/video/stream-32-teacher/diagnose.py SEED 100   # -> explore-SEED.json
    python docs/bench/video/stream-32-teacher/diagnose.py --summary   # -> summary.json: per-block gaps over the seeds

The summary reads the first two blocks (the lookahead solve's in the stream; in the teacher-forced row block 1 is the
full solve's and block 2 is sampled on it), the streamed blocks 3-8 (frames 9-32) and the whole clip: per seed the mean
label accuracy over those blocks minus the full sequence's, and the stream's minus the teacher-forced row's, each with
its 95% t-interval over the seeds.
"""

import json
import sys
from pathlib import Path

from effdiff.bench.video import paired

HERE = Path(__file__).parent
ROWS = {"full": ("full", {}),
        "stream O0": ("stream", dict(lookahead=16, lookahead_blocks=2, lookahead_steps=8, overlap=0)),
        "teacher O0": ("teacher", dict(overlap=0))}


def summary() -> dict:
    """The seeds' rows in docs/bench/video/first_block.py's layout (the video bench's first_block table renders it)
    and the label gaps over blocks 3-8 and over the whole clip."""
    from effdiff.checkpoint import tensors_sha256
    from effdiff.video.sampling import VideoModel
    runs = {int(p.stem.split("-")[1]): json.loads(p.read_text()) for p in sorted(HERE.glob("explore-*.json"))}
    first = next(iter(runs.values()))
    rows = {name: {str(s): {**r["rows"][name]["scores"], "label_acc": r["rows"][name]["label_acc"],
                            "label_acc_per_block": r["rows"][name]["label_acc_per_block"]} for s, r in runs.items()}
            for name in ROWS}
    from effdiff.bench.provenance import provenance
    out = {"what": __doc__.split("\n\n")[0], "seeds": sorted(runs), "n": first["n"], "guidance": 4.0,
           "provenance": provenance(),
           "runs": {str(s): r["provenance"]["code"] for s, r in runs.items()},
           "models": {"video-dit": {"sha256": tensors_sha256(VideoModel.load(None).den.net.state_dict()),
                                    "rows": rows}}, "gaps": {}}
    for what, sl in (("the first two blocks", slice(0, 2)), ("the streamed blocks 3-8", slice(2, 8)),
                     ("the whole clip", slice(0, 8))):
        acc = {name: [{"acc": sum(r["label_acc_per_block"][sl]) / len(r["label_acc_per_block"][sl])}
                      for r in rows[name].values()] for name in ROWS}
        g = out["gaps"][what] = {name: paired(acc["full"], acc[name], "acc") for name in ROWS if name != "full"}
        # the stream's own context against the full solve's: the same blocks, the same noise, paired by seed
        gap = {name: [{"gap": d} for d in g[name]["per_seed"]] for name in ("stream O0", "teacher O0")}
        g["and stream O0 minus teacher O0"] = paired(gap["teacher O0"], gap["stream O0"], "gap")
        print(what, {k: (round(v["mean"], 4), [round(float(c), 4) for c in v["ci95"]]) for k, v in g.items()})
    (HERE / "summary.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    if sys.argv[1:] == ["--summary"]:
        summary()
    else:
        from effdiff.bench.video import explore
        explore(__file__, __doc__, ROWS, int(sys.argv[1]), int(sys.argv[2]), 32)
