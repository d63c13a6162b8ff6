"""Post-hoc: the label accuracy and identity gaps (stream - full, per seed) of every 32-frame comparison of the stream
that keeps a 16-frame lookahead solve's first two blocks, pooled over their 25 seeds. Not a test of anything: each run
was decided under its own registered rule, which stands. The five runs differ in the lookahead solve's steps (12 or 8)
and the overlap (1 or 0); what they share is the 16-frame solve's two kept blocks and the streamed blocks after them.

    python docs/bench/video/stream-32-posthoc/posthoc.py
"""
import json
from pathlib import Path

from effdiff.bench.provenance import provenance
from effdiff.metrics.stats import mean_sd, t_interval

HERE = Path(__file__).parent
RUNS = {"stream-32/k2": "selection, overlap 1, 12-step solve", "stream-32-confirm": "confirm, overlap 1, 12-step solve",
        "stream-32-s8-confirm": "confirm, overlap 1, 8-step solve",
        "stream-overlap0-selection/f32": "selection, overlap 0, 8-step solve",
        "stream-32-o0-confirm": "confirm, overlap 0, 8-step solve"}
SCORES = ("label_acc", "identity")


def read(values):
    return {"mean": mean_sd(values)[0], "ci95": t_interval(values), "k": len(values)}


out = {"provenance": provenance(), "runs": {}, "pooled": {}}
pool = {s: [] for s in SCORES}
for name, what in RUNS.items():
    res = json.loads((HERE.parent / name / "video.json").read_text())
    assert res["quality_frames"] == 32 and res["lookahead"] == 16 and res["lookahead_blocks"] == 2, name
    run = {"what": what, "seeds": res["seeds"]}
    for s in SCORES:
        per_seed = res["quality_paired"][s]["per_seed"]
        pool[s] += per_seed
        run[s] = dict(read(per_seed), per_seed=per_seed)
    out["runs"][name] = run
    print(f"{name:32s} {what:38s}", "  ".join(f"{s} {run[s]['mean']:+.4f}" for s in SCORES))
for s in SCORES:
    out["pooled"][s] = read(pool[s])
    lo, hi = out["pooled"][s]["ci95"]
    print(f"pooled over {len(pool[s])} seeds: {s} {out['pooled'][s]['mean']:+.4f} [{lo:+.4f}, {hi:+.4f}]")
(HERE / "posthoc.json").write_text(json.dumps(out, indent=1) + "\n")
