"""``effdiff bench --suite guidance``: guidance without its double cost, against CFG at equal settings.

Per model, at the guidance scale where CFG is best (``SCALES``: chosen by ``--suite guidance-scales``,
docs/guidance.md) and at a higher one: CFG, the guidance interval, adaptive guidance and the CFG cache
(training-free, ``effdiff.guidance``), guidance distillation (a w-input student, when one is given) and
Model Guidance (a model trained with the MG objective, sampled with one evaluation per step). Every row
samples the same noise and labels per seed with DPM-Solver++(2M), 20 logSNR steps, and records the
network evaluations per sample that actually ran (``guidance.count.Evaluations``: CFG counts two per
step, a step with one evaluation one). The report gives FD and class accuracy with paired 95%
t-intervals against CFG at the same scale (Model Guidance and the distilled student: against CFG at
each scale), and memorization.

    effdiff bench --suite guidance --out bench-guidance          # or: python -m effdiff.bench.guidance --out DIR
    effdiff bench --suite guidance-best                          # one config per technique, at the best scale only
    effdiff bench --suite guidance-scales                        # FD / class accuracy vs CFG scale
    effdiff bench --prereg docs/bench/prereg/guidance-free-confirm.json --out DIR   # guidance-free: registered rows
    python -m effdiff.bench.guidance --suite guidance-high|guidance-freq --models M --out DIR

Technique configurations were fixed on a development seed (100), not on the reported seeds.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from .. import techniques as T
from .. import zoo
from ..denoisers import CFG
from ..guidance.adaptive import AdaptiveGuidanceConfig
from ..guidance.cfg_cache import CFGCacheConfig
from ..guidance.count import Evaluations
from ..guidance.interval import IntervalConfig
from ..sampling import sample
from .config import BenchConfig, register_suite, save_table
from .scoring import mean_sd, paired_change, pct_ci, pm, t_interval

SOLVER, SCHEDULE, STEPS = "dpmpp-2m", "logsnr", 20
SWEEP = (1.0, 1.25, 1.5, 2.0, 3.0)
# (CFG's best scale, a higher one) per model, from `--suite guidance-scales` (docs/guidance.md): the scale
# with the highest class accuracy whose FD is not measurably worse than the lowest FD of the sweep
# (digits-unet: its sweep, docs/bench/guidance/scales-digits-unet; the higher scale is the sweep's next-but-one
# above the best, as for the other two)
SCALES = {"digits-dit": (1.5, 3.0), "mnist-ldm-dit": (1.25, 2.0), "digits-unet": (1.5, 3.0)}
MG_MODELS = {"digits-dit": "digits-dit-mg", "mnist-ldm-dit": "mnist-ldm-dit-mg"}
# guidance-distilled students (a w input, Meng et al. 2023): a path per model, from the environment
GD_ENV = "EFFDIFF_GD_{}"
# row label -> (technique, config). σ intervals: Kynkäänniemi et al.'s EDM2 interval (0.28, 5.42] and a wider
# one; γ̄ for adaptive guidance on x0 predictions (digits-dit, dev seed: the median cosine passes 0.9 around
# step 7 and 0.99 around step 9 of 20); the CFG cache refreshes every 4th step after 2 full ones.
TECHNIQUES = {
    "interval-edm2": ("guidance-interval", IntervalConfig(0.28, 5.42)),
    "interval-wide": ("guidance-interval", IntervalConfig(0.1, 15.0)),
    "adaptive-0.9": ("guidance-adaptive", AdaptiveGuidanceConfig(0.9)),
    "adaptive-0.99": ("guidance-adaptive", AdaptiveGuidanceConfig(0.99)),
    "cfg-cache-N4": ("cfg-cache", CFGCacheConfig(interval=4, first_steps=2)),
}

# more training-free settings for the pre-registered re-test of issue 26's training-free line (suite "guidance-free");
# the mnist-ldm-dit one was picked among these on selection seeds (docs/bench/prereg/guidance-select.json) before
# the confirmatory registration. The bench's 20 logSNR steps have σ = 999, 428, 183, 78.4, 33.6, 14.4, 6.15, 2.64,
# 1.13, 0.48, 0.21, ...: each interval guides 5 to 7 of the 20 steps (at most 8 keeps >= 30% of CFG's evaluations
# saved); "interval-3-inf" guides only the 7 noisiest steps, as adaptive guidance's early guiding does.
CANDIDATES = {
    "interval-0.28-40": ("guidance-interval", IntervalConfig(0.28, 40.0)),
    "interval-0.4-100": ("guidance-interval", IntervalConfig(0.4, 100.0)),
    "interval-1-100": ("guidance-interval", IntervalConfig(1.0, 100.0)),
    "interval-2-200": ("guidance-interval", IntervalConfig(2.0, 200.0)),
    "interval-3-inf": ("guidance-interval", IntervalConfig(3.0, math.inf)),
    "adaptive-0.999": ("guidance-adaptive", AdaptiveGuidanceConfig(0.999)),
}
# FasterCache's frequency reweighting of the cached difference on top of cfg-cache-N4 (boost 0.2, untuned; suite
# "guidance-freq" compares it with plain reuse)
FREQ = {"cfg-cache-N4-f0.2": ("cfg-cache", CFGCacheConfig(interval=4, first_steps=2, boost=0.2))}
FREE = {**TECHNIQUES, **CANDIDATES, **FREQ}      # every training-free row label the suites know

_SAMPLES: dict = {}      # (model, config, seed) -> samples as scored (for per-seed class accuracy)


def _fmt(w: float) -> str:
    return f"{w:g}"


class _Row:
    """One row of ``model``: ``den_fn(den) -> denoiser to sample`` (``technique`` attached to ``den`` in setup)."""

    def __init__(self, model: str, label: str, den_fn, technique=None):
        self.model, self.label, self.den_fn, self.technique, self.handle = model, label, den_fn, technique, None

    def setup(self, den, sigmas, x, labels):
        if self.technique is not None:
            name, config = self.technique
            self.handle = T.get(name).apply(den, config)
            return self.handle
        return _NoHandle()

    def generate(self, den, D, x, sigmas, labels, seed):
        model = self.den_fn(den)
        with Evaluations(model) as ev:
            res = sample(model, x, sigmas, SOLVER, labels, seed=seed, return_info=True)
        res.stats["evaluations_per_sample"] = ev.per_sample(len(x))
        if self.handle is not None and self.handle.stats is not None:
            res.stats["guidance"] = self.handle.stats.as_dict()
        # the first generation of a seed is the scored one (warm-up and rounds are identical); later calls (the
        # runner's MACs count on 2 samples) must not replace it
        _SAMPLES.setdefault((self.model, self.label, seed), (den, res.x, labels))
        return res


class _NoHandle:
    routes_requests, stats = False, None

    def remove(self):
        pass


def cfg_at(w):
    """A row's denoiser transform: CFG at scale ``w`` (the model itself at 1)."""
    return lambda den: CFG(den, w) if w != 1.0 else den


def other_model(name: str, w: float | None = None):
    """Sample another model (MG, a student) in place of the row's own; loaded once."""
    cache = {}

    def fn(den):
        if "m" not in cache:
            if name in zoo.names():
                cache["m"] = zoo.load(name)
            else:                              # an exported model or student (a path): its kind builds it
                from .. import kinds
                m = kinds.from_checkpoint(name)
                cache["m"] = m.at(w) if w is not None else m
        return cache["m"]
    return fn


def row_config(model, label, den_fn, technique=None, baseline=None, reference=False) -> BenchConfig:
    """One guidance-protocol row (solver, schedule, steps fixed by the suite) sampling ``den_fn(den)``."""
    row = _Row(model, label, den_fn, technique)
    return BenchConfig(model, label, SOLVER, SCHEDULE, STEPS, reference=reference, baseline=baseline,
                       guidance=1.0, setup=row.setup, generate=row.generate)


LEAN = ("interval-edm2", "adaptive-0.9", "cfg-cache-N4")     # guidance-best: one configuration per technique


def _guidance(model: str, quick: bool, techniques_at_high: bool = True, only=None) -> list[BenchConfig]:
    best, high = SCALES.get(model, (2.0, 3.0))
    out = [row_config(model, f"cfg-{_fmt(best)}", cfg_at(best), reference=True)]
    for w in ((best,) if quick else (best, high)):
        base = f"cfg-{_fmt(w)}"
        if w != best:
            out.append(row_config(model, base, cfg_at(w), baseline=f"cfg-{_fmt(best)}"))
            if not techniques_at_high:
                continue
        for label, tech in TECHNIQUES.items():
            if only is not None and label not in only:
                continue
            out.append(row_config(model, f"{label}-{_fmt(w)}", cfg_at(w), tech, baseline=base))
        gd = os.environ.get(GD_ENV.format(model.upper().replace("-", "_")))
        if gd:
            out.append(row_config(model, f"guidance-distill-{_fmt(w)}", other_model(gd, w), baseline=base))
    out.append(row_config(model, "cond (w=1)", cfg_at(1.0), baseline=f"cfg-{_fmt(best)}"))
    mg = MG_MODELS.get(model)
    if mg in zoo.names():
        out.append(row_config(model, f"model-guidance ({mg})", other_model(mg), baseline=f"cfg-{_fmt(best)}"))
    return out


def _free(model: str, quick: bool) -> list[BenchConfig]:
    """CFG at the model's best scale and every training-free setting (``FREE``) at that scale."""
    best = SCALES.get(model, (2.0, 3.0))[0]
    base = f"cfg-{_fmt(best)}"
    return [row_config(model, base, cfg_at(best), reference=True)] + [
        row_config(model, f"{label}-{_fmt(best)}", cfg_at(best), tech, baseline=base) for label, tech in FREE.items()]


def _freq(model: str, quick: bool) -> list[BenchConfig]:
    """CFG at the best scale, the CFG cache with plain reuse and with FasterCache's frequency reweighting."""
    best = SCALES.get(model, (2.0, 3.0))[0]
    base = f"cfg-{_fmt(best)}"
    rows = {"cfg-cache-N4": TECHNIQUES["cfg-cache-N4"], **FREQ}
    return [row_config(model, base, cfg_at(best), reference=True)] + [
        row_config(model, f"{label}-{_fmt(best)}", cfg_at(best), tech, baseline=base) for label, tech in rows.items()]


def _high(model: str, quick: bool) -> list[BenchConfig]:
    """CFG at the best scale (reference), CFG at the higher one and every technique of ``TECHNIQUES`` there."""
    best, high = SCALES.get(model, (2.0, 3.0))
    ref, base = f"cfg-{_fmt(best)}", f"cfg-{_fmt(high)}"
    return [row_config(model, ref, cfg_at(best), reference=True), row_config(model, base, cfg_at(high), baseline=ref)] + [
        row_config(model, f"{label}-{_fmt(high)}", cfg_at(high), tech, baseline=base) for label, tech in TECHNIQUES.items()]


def _scales(model: str, quick: bool) -> list[BenchConfig]:
    """CFG at every scale of the sweep (reference: w = 1, no guidance)."""
    return [row_config(model, f"cfg-{_fmt(w)}", cfg_at(w), reference=w == 1.0, baseline=None if w == 1.0 else "cfg-1")
            for w in SWEEP]


# ---- per-seed class accuracy (the runner keeps FD per seed; accuracy is recomputed from the samples) --------

def _class_acc_per_seed(results: dict) -> None:
    from ..latent.denoiser import images
    from ..metrics import class_features, evaluation
    from ..metrics.quality import class_accuracy
    from .scoring import dataset_of
    for r in results["rows"]:
        accs = []
        for seed in r["seeds"]:
            hit = _SAMPLES.get((r["model"], r["config"], seed))
            if hit is None:
                break
            den, x, labels = hit
            _, logits = class_features(evaluation(dataset_of(den)).net, images(den, x))
            accs.append(class_accuracy(logits, labels))
        if len(accs) == len(r["seeds"]):
            r["class_acc_per_seed"] = accs


def acc_per_seed(r: dict) -> list[float] | None:
    """Per-seed class accuracy of a row: the recomputed values for seeds 2..k, and the first seed's from the
    runner's own mean over seeds (k·mean − the rest), which is exact and also repairs runs whose first-seed
    value was recomputed on the runner's 2-sample MACs call (fixed since: the first generation is kept)."""
    accs = r.get("class_acc_per_seed")
    if not accs or r.get("class_acc") is None:
        return accs
    return [len(accs) * r["class_acc"] - sum(accs[1:])] + list(accs[1:])


def _paired(r: dict, base: dict, key: str):
    a, b = (acc_per_seed(r), acc_per_seed(base)) if key == "class_acc_per_seed" else (r.get(key), base.get(key))
    if not a or not b or len(a) != len(b):
        return None
    diff = [x - y for x, y in zip(a, b)]
    return mean_sd(diff)[0], t_interval(diff)


def _acc_change(r, base) -> str:
    p = _paired(r, base, "class_acc_per_seed")
    if p is None:
        return ""
    m, ci = p
    if ci[0] is None:
        return f"{100 * m:+.1f} pt"
    return f"{100 * m:+.1f} pt [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def rows_table(results: dict) -> list[str]:
    """The Markdown table of a guidance run (docs/guidance.md is generated from it)."""
    by = {(r["model"], r["config"]): r for r in results["rows"]}
    lines = ["| model | row | evaluations / sample | vs baseline | ms/sample (noisy) | FD | FD change vs baseline (95% CI) | "
             "class acc (%) | class-acc change vs baseline (95% CI) | memorization |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["rows"]:
        bases = _bases(r, by)
        ev = _evaluations(r)
        for i, base in enumerate(bases or [None]):
            bev = _evaluations(base) if base else None
            name = r["config"] + (f" vs {base['config']}" if base is not None and len(bases) > 1 else "")
            fd_change = pct_ci(*paired_change(r["fd_per_seed"], base["fd_per_seed"])) if base else "reference"
            acc = r.get("class_acc")
            lines.append(f"| {r['model']} | {name} | {ev if ev is None else round(ev, 2)} | "
                         f"{'' if not (ev and bev) else f'{100 * (ev / bev - 1):+.0f}%'} | "
                         f"{pm(r['ms_per_sample'], r.get('ms_sd'))} | {pm(r['fd'], r.get('fd_sd'))} | {fd_change} | "
                         f"{'' if acc is None else pm(100 * acc, 100 * r.get('class_acc_sd', 0), cap=1)} | "
                         f"{_acc_change(r, base) if base else ''} | {r['mem_asymmetry']:.2f} |")
    return lines


def _evaluations(r: dict) -> float | None:
    """Network evaluations per sample: counted by the row (``Evaluations``), or for a plain CFG row of the
    runner's own path (no counter) its driver calls x 2 when guided (w != 1), x 1 otherwise."""
    ev = (r.get("info") or {}).get("evaluations_per_sample")
    if ev is None and r.get("setup") is None and isinstance(r.get("guidance"), (int, float)):
        ev = r["nfe"] * (2 if r["guidance"] != 1.0 else 1)
    return ev


def _bases(r: dict, by: dict) -> list[dict]:
    """What a row is compared with: its baseline; Model Guidance and students: CFG at each scale."""
    if r["config"].startswith(("model-guidance", "cond")):
        best, high = SCALES.get(r["model"], (2.0, 3.0))
        return [by[k] for k in ((r["model"], f"cfg-{_fmt(best)}"), (r["model"], f"cfg-{_fmt(high)}")) if k in by]
    if r.get("baseline") and (r["model"], r["baseline"]) in by:
        return [by[(r["model"], r["baseline"])]]
    ref = next((x for x in by.values() if x["model"] == r["model"] and x.get("reference")), None)
    return [ref] if ref is not None and ref is not r else []


def report(results: dict, out: Path) -> str:
    _class_acc_per_seed(results)
    rvr = results.get("real_vs_real", {})
    lines = [f"Guidance (solver {SOLVER}, {STEPS} {SCHEDULE} steps; seeds {results.get('seeds')}; n = "
             f"{results.get('n_samples')} per seed; FD mean ± sd over seeds, changes paired by seed with 95% "
             "t-intervals: an interval containing 0 is no measurable difference). Wall-clock ms/sample was "
             "measured on a shared, busy machine: noisy, not a speed claim.", ""]
    lines += [f"Comparison point {ds}: real-vs-real FD {pm(v['fd'], v.get('fd_sd'))}." for ds, v in rvr.items()]
    lines += [""] + rows_table(results)
    return save_table(out, "guidance.md", lines)


def scales_report(results: dict, out: Path) -> str:
    _class_acc_per_seed(results)
    return save_table(out, "guidance-scales.md", ["CFG scale sweep (reference: w = 1):", ""] + rows_table(results))


register_suite("guidance", _guidance, models=["digits-dit", "mnist-ldm-dit"], report=report)
register_suite("guidance-best", lambda model, quick: _guidance(model, quick, techniques_at_high=False, only=LEAN),
               models=["digits-dit", "mnist-ldm-dit"], report=report)
register_suite("guidance-free", _free, models=["digits-dit", "mnist-ldm-dit"], report=report)
register_suite("guidance-freq", _freq, models=["digits-dit", "mnist-ldm-dit"], report=report)
register_suite("guidance-high", _high, models=["digits-dit", "mnist-ldm-dit"], report=report)
register_suite("guidance-scales", _scales, models=["digits-dit", "mnist-ldm-dit"], report=scales_report)


def main(argv=None) -> None:
    import argparse
    from .runner import run, table
    p = argparse.ArgumentParser(prog="python -m effdiff.bench.guidance")
    p.add_argument("--suite", default="guidance", choices=["guidance", "guidance-best", "guidance-free", "guidance-freq", "guidance-high", "guidance-scales"])
    p.add_argument("--models", nargs="*")
    p.add_argument("--out", default="bench-guidance")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--docs", nargs="+", metavar="TITLE=RESULTS_JSON",
                   help="regenerate docs/guidance.md's tables from these runs instead of running")
    p.add_argument("--select", nargs=2, metavar=("RESULTS_JSON", "MODEL"),
                   help="apply the registered selection rule (select_row) to a guidance-free run and print the pick")
    a = p.parse_args(argv)
    if a.select:
        import json
        print("\n".join(select_row(json.loads(Path(a.select[0]).read_text()), a.select[1])[1]))
        return
    if a.docs:
        write_docs(Path(__file__).resolve().parents[3] / "docs" / "guidance.md", dict(x.split("=", 1) for x in a.docs))
        return
    res = run(models=a.models, suite_name=a.suite, out=a.out, threads=a.threads, quick=a.quick, repeats=1)
    print(table(res))



# ---- docs/guidance.md: tables and the checks, generated from results.json ------------------------

START, END = "<!-- generated: guidance tables -->", "<!-- end generated -->"


def _ci_has_zero(ci) -> bool:
    return ci is not None and ci[0] is not None and ci[0] <= 0 <= ci[1]


def verdicts(results: dict) -> list[str]:
    """The issue's two quality checks, per model, read off a guidance run."""
    by = {(r["model"], r["config"]): r for r in results["rows"]}
    lines = []
    for model in dict.fromkeys(r["model"] for r in results["rows"]):
        best = SCALES.get(model, (2.0, 3.0))[0]
        cfg = by.get((model, f"cfg-{_fmt(best)}"))
        if cfg is None:
            continue
        ev_cfg = cfg["info"]["evaluations_per_sample"]
        mg = next((r for (m, c), r in by.items() if m == model and c.startswith("model-guidance")), None)
        if mg is None:
            if results.get("suite") not in ("guidance-free", "guidance-freq", "guidance-high"):      # no MG rows
                lines.append(f"- {model}: no Model Guidance model in the zoo for this run.")
        else:
            ch, ci = paired_change(mg["fd_per_seed"], cfg["fd_per_seed"])
            ok = (_ci_has_zero(ci) or ci[1] < 0) and mg["info"]["evaluations_per_sample"] <= ev_cfg / 2
            lines.append(f"- {model}: Model Guidance, {mg['info']['evaluations_per_sample']:g} evaluations per sample vs "
                         f"CFG {best:g}'s {ev_cfg:g}: FD change {pct_ci(ch, ci)} -> "
                         f"{'met' if ok else 'NOT met'} (within CI of CFG's FD or better, with half the evaluations).")
        for w in SCALES.get(model, (2.0, 3.0)):
            lines += _free_verdicts(by, model, w)
    return lines


def _free_verdicts(by: dict, model: str, w: float) -> list[str]:
    """The training-free rows at scale ``w`` that save >= 30% of CFG's evaluations, by what their CIs say."""
    cfg = by.get((model, f"cfg-{_fmt(w)}"))
    if cfg is None:
        return []
    ev_cfg = cfg["info"]["evaluations_per_sample"]
    if not any(m == model and c.startswith(tuple(FREE)) and c.endswith(f"-{_fmt(w)}") for m, c in by):
        return []
    same, not_worse = [], []
    for (m, c), r in by.items():
        if m != model or not c.endswith(f"-{_fmt(w)}") or not c.startswith(tuple(FREE)):
            continue
        save = 1 - r["info"]["evaluations_per_sample"] / ev_cfg
        fd_ci, acc = r.get("fd_change_ci"), _paired(r, cfg, "class_acc_per_seed")
        if save < 0.3 or fd_ci is None or acc is None:
            continue
        text = f"{c} (saves {100 * save:.1f}%, FD {pct_ci(r['fd_change'], fd_ci)}, class acc {_acc_change(r, cfg)})"
        if _ci_has_zero(fd_ci) and _ci_has_zero(acc[1]):
            same.append(text)
        elif (_ci_has_zero(fd_ci) or fd_ci[1] < 0) and (_ci_has_zero(acc[1]) or acc[1][0] > 0):
            not_worse.append(text)
    return [f"- {model}, CFG {w:g}: training-free rows saving >= 30% of its evaluations with no measurable "
            f"FD or class-accuracy difference: {'; '.join(same) if same else 'none'}.",
            f"- {model}, CFG {w:g}: ... with a measurably lower FD and no measurable class-accuracy loss: "
            f"{'; '.join(not_worse) if not_worse else 'none'}."]


def select_row(results: dict, model: str, max_evaluations: float = 28.0) -> tuple[str | None, list[str]]:
    """The selection rule registered in docs/bench/prereg/guidance-select.json: among the model's rows other than
    its reference (CFG) with at most ``max_evaluations`` per sample, keep those whose paired FD and class-accuracy
    changes have 95% intervals containing 0 or on the better side; pick the highest lower end of the accuracy
    interval (ties: fewer evaluations, then lower FD change). Returns (the pick or None, a line per row)."""
    rows = [r for r in results["rows"] if r["model"] == model]
    cfg = next(r for r in rows if r.get("reference"))
    kept, lines = [], []
    for r in rows:
        if r is cfg:
            continue
        ev = r["info"]["evaluations_per_sample"]
        ch, ci = paired_change(r["fd_per_seed"], cfg["fd_per_seed"])
        _, aci = _paired(r, cfg, "class_acc_per_seed")
        ok = (ev <= max_evaluations and (_ci_has_zero(ci) or ci[1] < 0)
              and (_ci_has_zero(aci) or aci[0] > 0))
        if ok:
            kept.append((aci[0], -ev, -ch, r["config"]))
        lines.append(f"- {r['config']}: {ev:g} evaluations, FD {pct_ci(ch, ci)}, class acc {_acc_change(r, cfg)}"
                     f" -> {'kept' if ok else 'dropped'}")
    pick = max(kept)[3] if kept else None
    return pick, lines + [f"- pick: {pick or 'none'}"]


def choose_scale(results: dict) -> list[str]:
    """The rule that set ``SCALES`` from a scale sweep: the scale with the highest class accuracy among those
    whose FD is not measurably worse (paired 95% CI) than the sweep's lowest FD."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in results["rows"]):
        rows = [r for r in results["rows"] if r["model"] == model and r.get("guidance") is not None]
        low = min(rows, key=lambda r: r["fd"])
        ok = []
        for r in rows:
            ch, ci = paired_change(r["fd_per_seed"], low["fd_per_seed"]) if r is not low else (0.0, [0.0, 0.0])
            if ci[0] is None or ci[0] <= 0:
                ok.append(r)
            lines.append(f"- {model}, w = {r['guidance']:g}: FD vs the lowest (w = {low['guidance']:g}) "
                         f"{'lowest' if r is low else pct_ci(ch, ci)}, class acc {100 * r['class_acc']:.1f}%")
        best = max(ok, key=lambda r: r["class_acc"])
        lines.append(f"- {model}: chosen w = {best['guidance']:g} (bench.guidance.SCALES: {SCALES.get(model)})")
    return lines


def pooled(runs: list[dict]) -> list[str]:
    """Training-free rows scored in two or more runs at the same n: their paired FD and class-accuracy changes
    against the row's baseline pooled over every seed of those runs (a seed counted once, from the first run that
    has it). Descriptive only: no run registered this pooling."""
    groups: dict = {}
    for k, res in enumerate(runs):
        by = {(r["model"], r["config"]): r for r in res["rows"]}
        for r in res["rows"]:
            base = by.get((r["model"], r.get("baseline")))
            if base is None or not r["config"].startswith(tuple(FREE)) or not (acc_per_seed(r) and acc_per_seed(base)):
                continue
            g = groups.setdefault((r["model"], r["config"], base["config"], res.get("n_samples")), {})
            for i, seed in enumerate(r["seeds"]):
                if seed not in g:
                    g[seed] = ((r["fd_per_seed"][i] - base["fd_per_seed"][i]) / base["fd_per_seed"][i],
                               acc_per_seed(r)[i] - acc_per_seed(base)[i], k)
    lines = []
    for (model, config, base, n), g in groups.items():
        if len({v[2] for v in g.values()}) < 2:
            continue
        fd, acc = [v[0] for v in g.values()], [v[1] for v in g.values()]
        am, aci = mean_sd(acc)[0], t_interval(acc)
        lines.append(f"- {model}, {config} vs {base}, n = {n}, {len(g)} seeds ({_seed_ranges(sorted(g))}): FD change "
                     f"{pct_ci(mean_sd(fd)[0], t_interval(fd))}, class acc {100 * am:+.1f} pt "
                     f"[{100 * aci[0]:+.1f}, {100 * aci[1]:+.1f}]"
                     f"{'' if _ci_has_zero(aci) else ' (class accuracy measurably ' + ('lower)' if aci[1] < 0 else 'higher)')}")
    return lines


def _seed_ranges(seeds: list[int]) -> str:
    out, start = [], seeds[0]
    for a, b in zip(seeds, seeds[1:] + [None]):
        if b != a + 1:
            out.append(f"{start}-{a}" if a != start else f"{a}")
            start = b
    return ", ".join(out)


def write_docs(doc, runs: dict) -> None:
    """Replace the generated part of ``doc`` with the tables of ``runs`` ({title: results.json path})."""
    import json
    from ..io import atomic_write
    parts = []
    for title, path in runs.items():
        res = json.loads(Path(path).read_text())
        parts += [f"### {title}", "", f"`{path}`: {res.get('suite')} suite, seeds {res.get('seeds')}, "
                  f"n = {res.get('n_samples')} per seed, machine {res.get('machine', {}).get('processor')} "
                  f"({res.get('machine', {}).get('bench_threads')} thread).", ""]
        parts += [f"Real-vs-real FD ({ds}, n = {v['n']}): {pm(v['fd'], v.get('fd_sd'))}." for ds, v in
                  res.get("real_vs_real", {}).items()]
        parts += [""] + rows_table(res) + [""]
        if res.get("suite") not in ("guidance", "guidance-best", "guidance-free", "guidance-freq", "guidance-high"):         # a scale sweep
            parts += ["CFG's best scale (the rule in `bench.guidance.choose_scale`):", ""] + choose_scale(res) + [""]
        if res.get("suite") in ("guidance", "guidance-best", "guidance-free", "guidance-freq", "guidance-high") and any(r["config"].startswith(("model-guidance", *FREE))
                                                                     for r in res["rows"]):
            parts += ["Checks (issue 26's Done means):", ""] + verdicts(res) + [""]
    pool = pooled([json.loads(Path(path).read_text()) for path in runs.values()])
    if pool:
        parts += ["### Pooled over the runs above (descriptive, not pre-registered)", "",
                  "Training-free rows scored in more than one run at the same n, their per-seed paired changes "
                  "against the same baseline pooled (95% t-interval over all their seeds):", ""] + pool + [""]
    text = Path(doc).read_text()
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    atomic_write(Path(doc), head + START + "\n" + "\n".join(parts) + "\n" + END + tail)


if __name__ == "__main__":
    main()
