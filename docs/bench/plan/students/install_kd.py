"""Install the KD students into the zoo with their cards: the preset's command, the teacher chain's cost (the
pairs' teacher NFE, plus the start student's own chain) and the development scores (docs/bench/plan/students/
kd-dev/*.json, seeds of student-selection, never a plan range).

    python docs/bench/plan/students/install_kd.py RUN_DIR NAME DEV_JSON [RUN_DIR NAME DEV_JSON ...]
"""
import json
import sys
import tempfile
from pathlib import Path

import effdiff as ed
from effdiff import checkpoint as ckpt
from effdiff.distill import pairs as P


def chain(init: str) -> dict:
    """The start student's card with its chain's totals: a zoo student's as installed; a run's own export
    (a path, e.g. runs/X/model) with its pairs' teacher NFE and wall time added to its own start's totals."""
    if "/" not in init:
        return ed.zoo.card(init)["card"]
    c = dict(ckpt.load(init)[1]["card"])
    up = chain(c["args"]["init"])
    c["teacher_nfe_total"] = c["teacher_nfe"] + up.get("teacher_nfe_total", up["teacher_nfe"])
    c["wall_time_total_s"] = c["wall_time_s"] + up.get("wall_time_total_s", up["wall_time_s"])
    return c


args = sys.argv[1:]
for run, name, dev in zip(args[::3], args[1::3], args[2::3]):
    tensors, meta = ckpt.load(Path(run) / "model")
    c = meta["card"]
    info = P.manifest(c["args"]["pairs"])
    init = chain(c["args"]["init"])
    pairs_nfe = info["teacher_nfe"]
    first = ""                       # a start student that is a run's own export: its preset runs first, into that run
    if "/" in c["args"]["init"]:
        first = f"python -m effdiff.distill.presets {init['preset']} --out {Path(c['args']['init']).parent} && "
    c.update(preset=name, command=f"{first}python -m effdiff.distill.presets {name} --out DIR", export="DIR/model",
             root_teacher=c["teacher"], pairs=info["config"], pairs_teacher_nfe=pairs_nfe,
             teacher_nfe=pairs_nfe,
             teacher_nfe_total=pairs_nfe + init.get("teacher_nfe_total", init["teacher_nfe"]),
             wall_time_total_s=round(c["wall_time_s"] + init.get("wall_time_total_s", init["wall_time_s"]), 1),
             note_cost=f"teacher NFE = the {info['config']['n']:,} pairs ({info['config']['solver']}/"
                       f"{info['config']['schedule']}/{info['config']['steps']}); wall time excludes generating them; "
                       f"the totals add the start student {c['args']['init']}'s chain")
    d = json.load(open(dev))
    row = next(r for r in d["rows"] if r["student"].startswith(run))
    c["metrics"] = {
        "fd_summary": f"FD change vs heun/karras/40 {row['reason'].split(': ', 1)[1].split(' FD')[0]} on student-selection "
                      f"seeds {d['seeds'][0]}-{d['seeds'][-1]} (n = {d['n']}, paired by seed, 95% t-interval)",
        "metrics_protocol": f"docs/bench/plan/students/kd.py (the planner's certify measure) -> {dev}, commit "
                            f"{d['commit'][:7]}{' (src dirty)' if d['dirty'] else ''}; the plan suite certifies "
                            f"on its own fresh seeds"}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt.save(Path(tmp) / "model", tensors, meta)
        ed.zoo.install(Path(tmp) / "model", name)
    print(name, c["metrics"]["fd_summary"])
