"""Post-hoc: the earlier sparse confirms' rows read with the to-real motion rule (speed and acceleration by their
distance to real held-out clips', effdiff.bench.video.to_real). Not a test of anything: these runs were decided
under their own registered rules, which stand. Real clips: 4 x n_long per seed at the run's length, seed 100 + s,
exactly as a new sparse run makes them.

    python docs/bench/video/sparse-motion-posthoc/posthoc.py
"""
import json
from pathlib import Path

from effdiff.bench import video as bench
from effdiff.bench.provenance import provenance
from effdiff.video.evaluator import VideoEvaluator

HERE = Path(__file__).parent
RUNS = ["sparse-confirm", "sparse-sink-confirm", "sparse-continued-confirm", "sparse-ft-confirm", "sparse-ft3-confirm"]

ev = VideoEvaluator.shipped()
out = {"provenance": provenance(), "runs": {}}
for name in RUNS:
    res = json.loads((HERE.parent / name / "video.json").read_text())
    long, seeds = max(res["lengths"]), res["seeds"]
    real = bench.real_long(ev, bench.REAL_PER_CLIP * res["n_long"], long, seeds)
    dense = res["sparse_quality"]["dense"]["per_seed"]
    rows = {}
    for t, v in res["sparse_quality"].items():
        if t == "dense":
            continue
        tr = bench.to_real(dense, v["per_seed"], real)
        rows[t] = {"to_real": tr, "old": bench.worse(v["paired"]),
                   "to_real_rule": bench.judged(v["paired"], tr, "to-real")}
        print(name, t, "speed", bench.ci_cell(tr["speed"]), "accel", bench.ci_cell(tr["accel"]),
              "| worse-side, old rule:", rows[t]["old"], "to-real rule:", rows[t]["to_real_rule"])
    out["runs"][name] = {"seeds": seeds, "real": bench.summary(real), "rows": rows}
(HERE / "posthoc.json").write_text(json.dumps(out, indent=1))
