"""``effdiff bench --suite plan``: acceleration plans (``ed.plan``) on the zoo models at two quality
budgets (upper 95% CI end of the FD change vs the reference <= +5% and <= +10%; ``SEARCHES``: +5%
without and with distilled students in the search space, +10% with them), timed and scored by the
runner beside

- the reference sampler the plan was certified against,
- the best single configuration meeting the same budget (the cheapest plain solver x schedule x
  NFE that held on the plan's selection seeds),
- the naive stack: that solver configuration plus each technique family's individually best
  setting (the cheapest caching / quantization / early-exit candidate that held alone),

on the bench's seeds (0, 1, 2, ...: never seen by the planner, whose seeds are 200-599 and 3000-3399), with the
search's own wall time. Plans are searched once and kept as plan files in ``$EFFDIFF_PLAN_DIR``
(default ``plans/`` under the working directory), so a re-run reuses them::

    OMP_NUM_THREADS=1 effdiff bench --suite plan --threads 1 --out bench-plan      # all four models
    effdiff bench --suite plan --models digits-unet,digits-dit --quick --out bench-plan-quick
"""
from __future__ import annotations

import os
from pathlib import Path

from ..plan.file import Plan
from ..plan.spec import Spec
from .config import BenchConfig, register_suite, save_table
from .scoring import pct_ci, pm

BUDGETS = (0.05, 0.10)
MODELS = ["digits-unet", "digits-dit", "mnist-unet", "mnist-ldm-dit"]
PLANS: dict = {}          # (model, budget, students) -> Plan, for the report


def plan_dir() -> Path:
    return Path(os.environ.get("EFFDIFF_PLAN_DIR", "plans"))


def settings_from_env(base):
    """``base`` with the overrides in ``$EFFDIFF_PLAN_SETTINGS`` (a JSON object of ``Settings`` fields, e.g.
    ``{"fresh_seeds": 24, "cert_offset": 24}``; each plan file records the settings it was searched with)."""
    import json
    raw = os.environ.get("EFFDIFF_PLAN_SETTINGS", "").strip()
    if not raw:
        return base
    try:
        changes = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"EFFDIFF_PLAN_SETTINGS is not JSON ({e}): {raw!r}") from None
    if not isinstance(changes, dict):
        raise ValueError(f"EFFDIFF_PLAN_SETTINGS must be a JSON object of plan settings, got {raw!r}")
    return base.override(**changes)


def get_plan(model: str, budget: float, students: bool, quick: bool) -> Plan:
    """The plan for (model, budget, students): loaded from ``plan_dir()`` or searched and saved there."""
    from .. import zoo
    from ..plan.search import Settings, plan
    from ..plan.space import Space
    key = (model, budget, students)
    path = plan_dir() / f"{model}-{round(100 * budget)}pct-{'students' if students else 'solo'}{'-quick' if quick else ''}.json"
    if key not in PLANS:
        if path.is_file():
            PLANS[key] = Plan.load(path)
        else:
            den = zoo.load(model)
            p = plan(den, budget, space=Space(quick=quick, students=students), quick=quick, model=model,
                     settings=settings_from_env(Settings.quick() if quick else Settings()), progress=False,
                     log=lambda m: None if m.startswith("  ") else print(f"[plan {model} +{100 * budget:g}%] {m}", flush=True))
            p.save(path)
            PLANS[key] = p
    return PLANS[key]


def _spec_of(p: Plan, label: str | None) -> Spec | None:
    if label is None:
        return None
    for c in p.candidates:
        if c["label"] == label:
            return Spec.from_dict(c["spec"])
    return None


def naive_stack(p: Plan) -> Spec | None:
    """The best single configuration plus, per technique family, the cheapest candidate with that
    family's technique alone that held on the selection seeds (by measured ms/sample)."""
    base = _spec_of(p, p.search.get("best_single"))
    if base is None:
        return None
    best: dict = {}
    for c in p.candidates:
        q = c.get("quality")
        fam = [f for f in c["families"] if f not in ("solver", "student")]
        if (len(fam) != 1 or "student" in c["families"] or not q or q["ci"][1] is None or q["ci"][1] > p.budget
                or c.get("ms_per_sample") is None):
            continue
        if fam[0] not in best or c["ms_per_sample"] < best[fam[0]]["ms_per_sample"]:
            best[fam[0]] = c
    entries = [tuple(e) for c in best.values() for e in Spec.from_dict(c["spec"]).techniques]
    return base.use(*entries) if entries else None


class _SpecRow:
    """A row that samples a spec from the runner's noise (rescaled to unit noise)."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.prepared = None

    def generate(self, den, D, x, sigmas, labels, seed):
        if self.prepared is None:
            from ..plan.runs import Sampler
            self.prepared = Sampler(den, labels).prepare(self.spec)
        return self.prepared.sample(den, x / float(sigmas[0]), labels, seed, return_info=True)


def _row(model: str, label: str, spec: Spec, **kw) -> BenchConfig:
    from .. import timesteps
    sched = spec.schedule if (spec.schedule in timesteps.SCHEDULES or spec.schedule == "full"
                              or ":" in spec.schedule) else "uniform"
    return BenchConfig(model, label, spec.solver, sched, spec.steps, generate=_SpecRow(spec).generate, **kw)


# the searches per model: (budget, students in the space); quick: the first two
SEARCHES = ((0.05, False), (0.05, True), (0.10, True))


def searches_from_env(searches: tuple) -> tuple:
    """``searches`` restricted to those named in ``$EFFDIFF_PLAN_SEARCHES`` (comma-separated, e.g. ``5`` or
    ``5,5+students,10+students``: the budget in percent, ``+students`` where students are in the space),
    for a registered run that measures only some of them; unset: all. A name not in ``searches`` is an error."""
    raw = os.environ.get("EFFDIFF_PLAN_SEARCHES", "").strip()
    if not raw:
        return searches
    names = {f"{100 * b:g}{'+students' if st else ''}": (b, st) for b, st in searches}
    want = [w.strip() for w in raw.split(",") if w.strip()]
    bad = [w for w in want if w not in names]
    if bad or not want:
        raise ValueError(f"EFFDIFF_PLAN_SEARCHES names {bad or raw!r}; known: {', '.join(names)}")
    return tuple(x for k, x in names.items() if k in want)


def configs(model: str, quick: bool = False) -> list[BenchConfig]:
    rows: list[BenchConfig] = []
    ref = None
    from ..plan.space import students_of
    searches = searches_from_env(SEARCHES[:2] if quick else SEARCHES)
    if not students_of(model):                # no students: the +5% search with them is the one without
        searches = tuple(s for s in searches if not (s[1] and (s[0], False) in searches))
    for budget, students in searches:
        p = get_plan(model, budget, students, quick)
        if ref is None:
            ref = p.reference
            rows.append(_row(model, f"reference {ref.label()}", ref, reference=True))
        tag = f"{100 * budget:g}%"
        if p.spec is not None:
            rows.append(_row(model, f"plan@{tag}{'+students' if students else ''}: {p.spec.label()}", p.spec))
        if students and (budget, False) in searches:     # its best single / naive stack rows come from that one
            continue
        single = _spec_of(p, p.search.get("best_single"))
        if single is not None:
            rows.append(_row(model, f"best single@{tag}: {single.label()}", single))
        stack = naive_stack(p)
        if stack is not None:
            rows.append(_row(model, f"naive stack@{tag}: {stack.label()}", stack))
    return rows


def report(results: dict, out: Path) -> str:
    out = Path(out)
    k = len(results["seeds"])
    lines = [f"Acceleration plans: every row sampled, timed (interleaved rounds) and scored on bench seeds "
             f"{results['seeds'][0]}-{results['seeds'][-1]} ({k} seeds, n = {results['n_samples']}), which no plan "
             "search saw. FD change vs the reference: paired by seed, 95% t-interval. Speed-ups are wall clock on "
             "this machine.", "",
             "| model | row | NFE | ms/sample | speed-up vs reference | FD change vs reference (bench seeds) |",
             "|---|---|---:|---:|---:|---:|"]
    for r in results["rows"]:
        vs = "reference" if r.get("reference") else (pct_ci(r["fd_vs_ref"], r.get("fd_vs_ref_ci")) if "fd_vs_ref" in r else "")
        lines.append(f"| {r['model']} | {r['config']} | {r['nfe']} | {pm(r['ms_per_sample'], r.get('ms_sd'))} | "
                     f"{r['speedup']:.2f}x | {vs} |")
    lines += ["", "Plan vs the best single configuration and the naive stack at the same budget (bench seeds' "
              "ms/sample), the plan's certification on its own fresh seeds, and the search's wall time:", "",
              "| model | budget | students | plan | vs best single | vs naive stack | naive stack FD change "
              "| certified (plan's fresh seeds) | search wall time |", "|---|---:|---|---|---:|---:|---:|---:|---:|"]
    by = {(r["model"], r["config"].split(":")[0]): r for r in results["rows"]}
    (out / "plans").mkdir(parents=True, exist_ok=True)
    for (model, budget, students), p in sorted(PLANS.items()):
        tag = f"{100 * budget:g}%"
        p.save(out / "plans" / f"{model}-{round(100 * budget)}pct-{'students' if students else 'solo'}.json")
        row = by.get((model, f"plan@{tag}{'+students' if students else ''}"))
        single, stack = by.get((model, f"best single@{tag}")), by.get((model, f"naive stack@{tag}"))

        def ratio(other):
            return f"{other['ms_per_sample'] / row['ms_per_sample']:.2f}x" if other and row else "-"
        stack_q = pct_ci(stack["fd_vs_ref"], stack.get("fd_vs_ref_ci")) if stack and "fd_vs_ref" in stack else "-"
        cert = p.certified["text"] if p.certified else "none found"
        lines.append(f"| {model} | +{tag} | {'yes' if students else 'no'} | "
                     f"{p.spec.label() if p.spec else '-'} | {ratio(single)} | {ratio(stack)} | {stack_q} | {cert} | "
                     f"{p.search.get('wall_s', 0):.0f} s |")
    return save_table(out, "plan.md", lines)


register_suite("plan", configs, models=MODELS, report=report)


def summary_table(paths: list[str]) -> str:
    """A Markdown table of saved plans (what each search found, its certification on fresh seeds,
    its interleaved timing on the search's machine, its own cost), from the plan files."""
    lines = [f"<!-- generated by python -m effdiff.bench.plan --summary {' '.join(paths)}; do not edit -->",
             "| model | budget | n per seed | plan | certified (fresh seeds) | selection seeds | certification attempts (selection -> "
             "fresh) | best single configuration (held on selection seeds) | speed-up vs reference (wall clock, search "
             "machine) | vs best single | vs best single with the plan's switches | one-off (compile) | threads | "
             "candidates | search wall time |",
             "|---|---:|---:|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for path in paths:
        p = Plan.load(path)
        sp = p.speed or {}

        def x(key):
            return f"{sp[key]:.2f}x" if sp.get(key) else "-"
        one_off = f"{sp['one_off_s']:.1f} s" if p.spec is not None and "one_off_s" in sp else "-"
        tries = "; ".join(f"{c['label']}: {c['quality']['text']} -> {c['certified']['text']}"
                          for c in p.candidates if c.get("certified")) or "-"
        n, nf = p.settings.get("n"), p.settings.get("n_fresh")
        lines.append(f"| {p.model} | +{100 * p.budget:g}% | {n}{f' ({nf} fresh)' if nf and nf != n else ''} | {p.spec.label() if p.spec else 'none certified'} | "
                     f"{p.certified['text'] if p.certified else '-'} | {p.selection['text'] if p.selection else '-'} | "
                     f"{tries} | "
                     f"{p.search.get('best_single') or '-'} | {x('speedup_vs_reference')} | {x('speedup_vs_best_single')} | "
                     f"{x('speedup_vs_best_single_with_plan_switches')} | "
                     f"{one_off} | "
                     f"{sp.get('threads', '-')} | {p.search.get('candidates')} | {p.search.get('wall_s', 0):.0f} s |")
    return "\n".join(lines)


def main(argv=None) -> None:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m effdiff.bench.plan")
    ap.add_argument("--summary", nargs="+", metavar="PLAN", required=True, help="plan files to tabulate")
    ap.add_argument("--doc", help="rewrite the <!-- plans: FIRST_PLAN --> block of this Markdown file")
    a = ap.parse_args(argv)
    text = summary_table(a.summary)
    if not a.doc:
        print(text)
        return
    from ..io import atomic_write
    from .interactions import write_block
    atomic_write(a.doc, write_block(Path(a.doc).read_text(), a.summary[0], text, tag="plans"))
    print(f"rewrote the plans block of {a.doc}")


if __name__ == "__main__":
    main()
