"""Zoo card metrics backed by a results file in the repository and tied to the weights: the card's
numbers are re-scored (``bench.cards.card_metrics``, the card's own protocol) into
``docs/bench/cards/NAME/results.json`` together with the SHA-256 of the tensors they were scored on.
The card JSON's ``card`` section stays free text (provenance may be edited), but tests/test_tables.py
fails when a card's metrics differ from their results file or the file belongs to other weights.

    python -m effdiff.bench.card_results digits-dit mnist-unet ...   # re-score and write the files
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from ..assets import card            # the model JSON (tests plant edited cards here)
from . import card_sources
from .tables import ROOT

OUT = ROOT / "docs/bench/cards"
TAG = re.compile(r"^fd_(?P<solver>[a-z0-9-]+)_(?P<schedule>[a-z]+)_(?P<steps>\d+)$")
TOL = 1e-4                 # the card rounds to 4 decimals
# card metrics that come from other results files, named in the card itself
ELSEWHERE = {n: "the distill bench runs the card cites (docs/bench/distill/bench-*/results.json)"
             for n in ("digits-dit-dmd-1step", "digits-dit-cd-4step", "digits-unet-pd-1step", "digits-unet-pd-2step",
                       "digits-unet-pd-4step")}
# cards backed by a study or bench run scored on their tensors instead (bench.card_sources; tests/test_tables_generated.py)
SOURCED = {n: "effdiff.bench.card_sources" for n in card_sources.names()}
# cards whose numbers have no results file in the repository yet (docs/evaluation.md lists them)
UNBACKED = {n: "scored by the study finetune-eval, whose output was not committed"
            for n in ("digits-dit-lora-thick", "digits-dit-controlnet-edges", "digits-unet-lora-thick",
                      "digits-unet-controlnet-xs-edges") if n not in SOURCED}
UNBACKED.update({n: "Model Guidance fine-tunes, scored by the guidance study's mg_rows (docs/guidance.md); "
                    "no results file with their weights' hash yet"
                 for n in ("digits-dit-mg", "mnist-ldm-dit-mg") if n not in SOURCED})


def protocol(meta: dict) -> dict:
    """Solver, schedule, steps, n and seeds of a card scored by ``bench.cards`` (from its metric keys)."""
    m = meta["card"]["metrics"]
    tags = [TAG.match(k) for k in m if TAG.match(k)]
    if not tags:
        raise KeyError("no bench.cards metrics (fd_SOLVER_SCHEDULE_STEPS) in this card")
    t = tags[0]
    n = int(re.search(r"(\d+) class-balanced samples", m["metrics_protocol"]).group(1))
    seeds = json.loads(re.search(r"seeds (\[[\d, ]+\])", m["metrics_protocol"]).group(1))
    return {"solver": t["solver"], "schedule": t["schedule"], "steps": int(t["steps"]), "n": n, "seeds": seeds}


def path(name: str) -> Path:
    return OUT / name / "results.json"


def write(name: str) -> Path:
    """Re-score ``name`` with its card's protocol and write the results file (weights hash included)."""
    from .. import zoo
    from ..io import atomic_write
    from .cards import card_metrics
    from .provenance import provenance
    meta, p = card(name), None
    proto = protocol(meta)
    metrics = card_metrics(zoo.load(name), proto["solver"], proto["schedule"], proto["steps"], proto["n"],
                           tuple(proto["seeds"]))
    res = {"model": name, "weights_sha256": meta["sha256"]["tensors"], "protocol": proto, "metrics": metrics,
           "command": f"python -m effdiff.bench.card_results {name}", "provenance": provenance()}
    p = path(name)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, json.dumps(res, indent=1, sort_keys=True))
    return p


def check(name: str) -> list[str]:
    """Differences between a card's metrics and its results file (empty: the card is backed)."""
    meta, p = card(name), path(name)
    if not p.exists():
        return [f"{name}: no results file {p.relative_to(ROOT)}"]
    res = json.loads(p.read_text())
    out = []
    if res["weights_sha256"] != meta["sha256"]["tensors"]:
        out.append(f"{name}: {p.name} was scored on other weights ({res['weights_sha256'][:12]}...)")
    cm = meta["card"]["metrics"]
    for k, v in cm.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k in res["metrics"]:
            if abs(v - res["metrics"][k]) > TOL:
                out.append(f"{name}: card {k} = {v}, results file {res['metrics'][k]}")
    missing = [k for k, v in cm.items() if isinstance(v, float) and k not in res["metrics"]]
    if missing:
        out.append(f"{name}: card metrics {missing} are in no results file")
    return out


def check_cited(name: str) -> list[str]:
    """A student card's per-seed-set FDs (``fd_seeds_TAG``) against the distill run each cites
    (``source_seeds_TAG``: 'docs/bench/distill/RUN, row CONFIG')."""
    m, out = card(name)["card"]["metrics"], []
    for k, v in m.items():
        if not k.startswith("fd_seeds_"):
            continue
        src = m.get("source_seeds_" + k[len("fd_seeds_"):], "")
        hit = re.match(r"(\S+), row (\S+)", src)
        if not hit:
            out.append(f"{name}: {k} cites no results row (source_seeds_...)")
            continue
        rows = json.loads((ROOT / hit[1] / "results.json").read_text())["rows"]
        row = next((r for r in rows if r["config"] == hit[2]), None)
        if row is None or abs(row["fd"] - v) > TOL:
            out.append(f"{name}: {k} = {v}, {hit[1]} row {hit[2]}: {None if row is None else row['fd']}")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m effdiff.bench.card_results")
    ap.add_argument("names", nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    for n in a.names:
        p = write(n)
        print(n, "->", p, "; differences from the card:", check(n) or "none", flush=True)


if __name__ == "__main__":
    main()
