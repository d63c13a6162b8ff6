"""Interactions between acceleration families, measured (never assumed additive): for each pair
(A, B) on a base sampler, the FD change vs the reference of the base, A, B and A+B, paired by seed
with 95% t-intervals, and the interaction: (A+B) - A - B + base per seed (0 = additive; > 0 the
pair costs more than its parts). docs/planning.md's table is generated from the results file::

    python -m effdiff.bench.interactions --out docs/bench/plan/interactions.json   # measure (nice, 1 thread)
    python -m effdiff.bench.interactions --table docs/bench/plan/interactions.json # the Markdown table
    python -m effdiff.bench.interactions --table docs/bench/plan/interactions.json --doc docs/planning.md
        # rewrites the block between <!-- interactions: FILE --> and <!-- /interactions --> (--check: exit 1 if stale)

Seeds: the ``plan-interactions`` range (600-699), never used by a plan search.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ..io import atomic_write, machine
from ..metrics.stats import mean_sd, pct_ci, t_interval
from ..plan.quality import EvalFD
from ..plan.runs import Sampler, default_reference, measure_on
from ..plan.spec import Spec

SEED0 = 600


def _register_seeds() -> None:
    try:
        from .. import seeds as SR
        if "plan-interactions" not in SR.REGISTRY:
            SR.register(SR.SeedRange("plan-interactions", 600, 700, "the interactions table of docs/planning.md "
                                     "(python -m effdiff.bench.interactions)"))
    except ImportError:
        pass


BASE_UNET = Spec("dpmpp-2m", 10, "logsnr")
BASE_DIT = Spec("dpmpp-2m", 10, "logsnr")
STUDENT = Spec("ddim", 4, "student", model="digits-unet-pd-4step")

# name -> (model, base, A, B, A+B, what A and B are)
PAIRS = {
    "caching x activation quantization": ("digits-unet", BASE_UNET, BASE_UNET.use("deepcache:interval=3"),
                                          BASE_UNET.use("ptq:w_bits=8,a_bits=8"),
                                          BASE_UNET.use("ptq:w_bits=8,a_bits=8", "deepcache:interval=3"),
                                          "DeepCache N=3", "PTQ W8A8"),
    "caching x few steps": ("digits-unet", Spec("dpmpp-2m", 20, "logsnr"),
                            Spec("dpmpp-2m", 20, "logsnr").use("deepcache:interval=2"), Spec("dpmpp-2m", 5, "logsnr"),
                            Spec("dpmpp-2m", 5, "logsnr").use("deepcache:interval=2"), "DeepCache N=2", "20 -> 5 steps"),
    "caching x students": ("digits-unet", BASE_UNET, BASE_UNET.use("deepcache:interval=2"), STUDENT,
                           STUDENT.use("deepcache:interval=2"), "DeepCache N=2", "PD student, 4 steps"),
    "quantization x students": ("digits-unet", BASE_UNET, BASE_UNET.use("ptq:w_bits=8,a_bits=8"), STUDENT,
                                STUDENT.use("ptq:w_bits=8,a_bits=8"), "PTQ W8A8", "PD student, 4 steps"),
    "early exit x caching": ("digits-dit", BASE_DIT, BASE_DIT.use("ase:max_drop=2"), BASE_DIT.use("fora:interval=2"),
                             BASE_DIT.use("ase:max_drop=2", "fora:interval=2"), "ASE (drop 2 blocks)", "FORA N=2"),
    "guidance x caching": ("digits-unet", BASE_UNET, BASE_UNET.replace(guidance=2.0),
                           BASE_UNET.use("deepcache:interval=2"),
                           BASE_UNET.replace(guidance=2.0).use("deepcache:interval=2"), "CFG scale 2", "DeepCache N=2"),
}


def measure(names=None, seeds: int = 4, n: int = 200, log=print, save=None) -> dict:
    """Every pair of ``PAIRS`` (or ``names``): per-seed FD changes of base, A, B, A+B vs the model's
    default plan reference, and the interaction. ``save(results)`` is called after each pair."""
    from .. import zoo
    _register_seeds()
    seed_list = [SEED0 + i for i in range(seeds)]
    out, samplers = {}, {}
    for name in names or PAIRS:
        model, base, a, b, ab, what_a, what_b = PAIRS[name]
        den = zoo.load(model)
        sm = samplers.setdefault(model, Sampler(den, None))
        ref = default_reference(den, model)
        m = EvalFD("digits")
        t0 = time.perf_counter()
        per = {k: measure_on(den, s, ref, m, seed_list, n, sampler=sm).values
               for k, s in (("base", base), ("a", a), ("b", b), ("ab", ab))}
        inter = [per["ab"][i] - per["a"][i] - per["b"][i] + per["base"][i] for i in range(seeds)]
        out[name] = {"model": model, "reference": ref.label(), "a": what_a, "b": what_b,
                     "specs": {k: s.label() for k, s in (("base", base), ("a", a), ("b", b), ("ab", ab))},
                     "fd_change": {k: {"values": v, "mean": mean_sd(v)[0], "ci": t_interval(v)} for k, v in per.items()},
                     "interaction": {"values": inter, "mean": mean_sd(inter)[0], "ci": t_interval(inter)},
                     "seconds": round(time.perf_counter() - t0, 1)}
        log(f"{name}: base {pct_ci(out[name]['fd_change']['base']['mean'], out[name]['fd_change']['base']['ci'])}, "
            f"A {pct_ci(mean_sd(per['a'])[0], t_interval(per['a']))}, B {pct_ci(mean_sd(per['b'])[0], t_interval(per['b']))}, "
            f"A+B {pct_ci(mean_sd(per['ab'])[0], t_interval(per['ab']))}, interaction {pct_ci(mean_sd(inter)[0], t_interval(inter))}")
        if save is not None:
            save(_results(out, seed_list, n))
    return _results(out, seed_list, n)


def _results(out: dict, seed_list: list, n: int) -> dict:
    return {"pairs": dict(out), "seeds": seed_list, "n": n, "measure": "FD change vs the reference (digits-eval features, "
            "held-out data), paired by seed, 95% t-interval", "machine": machine(), "torch": torch.__version__,
            "command": "python -m effdiff.bench.interactions --out FILE"}


def verdict(ci) -> str:
    lo, hi = ci
    if lo is None:
        return "one seed"
    if lo > 0:
        return "interferes (costs more than its parts)"
    if hi < 0:
        return "helps (costs less than its parts)"
    return "no measurable interaction"


def table(results: dict, source: str) -> str:
    """The Markdown table docs/planning.md shows, from a results file."""
    seeds = results["seeds"]
    lines = [f"<!-- generated by python -m effdiff.bench.interactions --table {source}; do not edit -->",
             f"FD change vs each model's plan reference ({', '.join(sorted({r['reference'] for r in results['pairs'].values()}))}), "
             f"paired by seed (seeds {seeds[0]}-{seeds[-1]}, n = {results['n']} per seed, 95% t-interval); "
             "interaction = (A+B) - A - B + base per seed.", "",
             "| pair | model | base | A | B | A alone | B alone | A + B | interaction | verdict |",
             "|---|---|---|---|---|---:|---:|---:|---:|---|"]
    for name, r in results["pairs"].items():
        fc = r["fd_change"]
        cell = {k: pct_ci(fc[k]["mean"], fc[k]["ci"]) for k in fc}
        lines.append(f"| {name} | {r['model']} | {r['specs']['base']} ({cell['base']}) | {r['a']} | {r['b']} | "
                     f"{cell['a']} | {cell['b']} | {cell['ab']} | "
                     f"{pct_ci(r['interaction']['mean'], r['interaction']['ci'])} | {verdict(r['interaction']['ci'])} |")
    return "\n".join(lines)


def write_block(doc: str, source: str, text: str, tag: str = "interactions") -> str:
    """``doc`` with the block ``<!-- TAG: SOURCE -->...<!-- /TAG -->`` replaced by ``text``."""
    import re
    pat = re.compile(rf"(<!-- {tag}: " + re.escape(source) + rf" -->\n)(.*?)(<!-- /{tag} -->)", re.S)
    if not pat.search(doc):
        raise ValueError(f"no <!-- {tag}: {source} --> ... <!-- /{tag} --> block")
    return pat.sub(lambda m: m.group(1) + text + "\n" + m.group(3), doc)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m effdiff.bench.interactions")
    ap.add_argument("--out", help="write the results JSON here")
    ap.add_argument("--table", metavar="RESULTS", help="print the Markdown table of a results file")
    ap.add_argument("--doc", help="with --table: rewrite the generated block of this Markdown file")
    ap.add_argument("--check", action="store_true", help="with --doc: exit 1 if the block differs instead of writing")
    ap.add_argument("--pairs", help="comma-separated pair names (default all)")
    ap.add_argument("--merge", nargs="+", metavar="RESULTS", help="combine results files (same seeds and n) into --out")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--n", type=int, default=200)
    a = ap.parse_args(argv)
    if a.table:
        text = table(json.loads(Path(a.table).read_text()), a.table)
        if not a.doc:
            print(text)
            return
        doc = Path(a.doc).read_text()
        new = write_block(doc, a.table, text)
        if a.check:
            raise SystemExit(0 if new == doc else f"{a.doc}: the interactions block differs from {a.table}")
        atomic_write(a.doc, new)
        print(f"rewrote the interactions block of {a.doc}")
        return
    torch.set_num_threads(1)
    if a.merge:
        parts = [json.loads(Path(f).read_text()) for f in a.merge]
        if len({(tuple(r["seeds"]), r["n"]) for r in parts}) != 1:
            raise SystemExit("--merge: the files differ in seeds or n")
        res = {**parts[0], "pairs": {k: v for r in parts for k, v in r["pairs"].items()}}
        atomic_write(a.out, json.dumps(res, indent=1))
        print(f"wrote {a.out} ({len(res['pairs'])} pairs)")
        return
    names = a.pairs.split(",") if a.pairs else None
    res = measure(names, a.seeds, a.n, save=(lambda r: atomic_write(a.out, json.dumps(r, indent=1))) if a.out else None)
    if a.out:
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
