"""Tables generated, not typed: every marked block in README.md, docs/*.md and the zoo cards is
rebuilt from the results files it cites, so a published number is always its results.json's.

    <!-- table: docs/bench/caching/results.json cols=model,run,guidance,macs,speedup_b,fd,change where=-50\\+ -->
    (generated table)
    <!-- /table -->
    ... all <!-- value: docs/bench/caching/results.json kind=count has=fd_change -->84<!-- /value --> comparisons ...

A block's arguments: the results files (paths from the repository root; several for ``kind=compress``),
then ``key=value`` options: ``kind`` (a renderer of ``KINDS``; default ``rows``), ``cols`` (columns of
``COLUMNS``), ``where`` (regex on the config name), ``model`` (``a|b``), ``has`` (a key the row must
have), ``list`` (the JSON list holding the rows; default ``rows``). Inline ``value`` blocks render one
number or phrase (``kind=count``, ``kind=change``, ``kind=verdicts``).

    python -m effdiff.bench.tables --check      # exit 1 naming every block that differs (tests/test_tables.py)
    python -m effdiff.bench.tables --write      # rewrite every block from its results files
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shlex
from pathlib import Path
from typing import Callable

from .scoring import mean_sd, pct_ci, pm, t_interval

ROOT = Path(__file__).resolve().parents[3]
DOC_GLOBS = ("README.md", "docs/*.md", "docs/bench/*.md", "src/effdiff/zoo/weights/*.md")
BLOCK = re.compile(r"(?P<open><!-- (?P<tag>table|value): (?P<args>.*?) -->)(?P<body>.*?)(?P<close><!-- /(?P=tag) -->)",
                   re.S)


# ---- rows and their columns -----------------------------------------------------------------
def _acc(r):
    return "" if r.get("class_acc") is None else f"{100 * r['class_acc']:.1f}%"


def served(r: dict) -> bool:
    """A request answered from a cross-request cache (NIRVANA): its samples do not change with the seed."""
    return bool((r.get("info") or {}).get("hit")) and len(set(r.get("fd_per_seed") or [])) == 1


def macs_ratio(r: dict, rows: list[dict]) -> str:
    """Baseline MACs / row MACs. A cache-served request evaluates the same network on fewer steps, so
    its ratio is the baseline's NFE over the served request's NFE (the stored macs_ratio is of a missed
    request: the bench measures MACs on fresh noise, a miss). int8 rows: the MAC counter does not see
    integer kernels, so no ratio."""
    if "int8" in r["config"]:
        return "same MACs"
    if served(r):
        base = next(b for b in rows if b["model"] == r["model"] and b["config"] == r["baseline"])
        return f"{base['nfe'] / r['nfe']:.2f}x served (a miss: {r['macs_ratio']:.2f}x)"
    return f"{r['macs_ratio']:.2f}x" if "macs_ratio" in r else ""


def change(r: dict, key: str = "fd_change") -> str:
    """The paired change with its interval; none for rows with identical samples on every seed."""
    if key not in r:
        return ""
    if len(set(r.get("fd_per_seed") or [])) == 1 and len(r["fd_per_seed"]) > 1:
        return f"{100 * r[key]:+.0f}% (same samples on every seed: served from the cache; no CI)"
    return pct_ci(r[key], r.get(key + "_ci"))


def verdict(r: dict, key: str = "fd_change") -> str:
    """What the interval says: a cost, a gain, or no measurable difference (0 inside the interval)."""
    ci = r.get(key + "_ci")
    if not ci or ci[0] is None:
        return "no interval"
    if ci[0] > 0:
        return "costs measurably"
    if ci[1] < 0:
        return "lowers FD measurably"
    return "no measurable difference"


def _int8_fraction(r: dict) -> str:
    """Layers that ran integer kernels (int_mm, fbgemm) of all converted-or-kept layers; the rest ran
    float32 compute (weight-only int8 ``dequant``, or float32 kept by ``auto``). The share of MACs: exact when
    every Linear ran integer kernels; for ``auto`` (its stats count the integer Linear layers, not which) an
    upper bound, the MACs of that many of the largest Linear layers (``bench.int8_share``)."""
    c = (r.get("info") or {}).get("compress") or {}
    if "fbgemm" not in c:
        return ""
    integer, total = c["int_mm"] + c["fbgemm"], c["int_mm"] + c["fbgemm"] + c["dequant"] + c["fp32"]
    share = _INT8_SHARE.get(r["model"]) if _INT8_SHARE else None
    if share and c["fp32"] == 0 and c["int_mm"] + c["fbgemm"] == share["linear_layers"] \
            and c["dequant"] == share["conv_layers"]:       # every Linear integer, every conv weight-only
        return f"{integer} of {total}, {100 * share['linear_share']:.1f}% of MACs"
    if share and c["fp32"] and "linear_macs_per_layer" in share:     # int8-auto: how many, not which
        bound = sum(share["linear_macs_per_layer"][:c["int_mm"] + c["fbgemm"]]) / share["total_macs"]
        return f"{integer} of {total}, ≤ {100 * bound:.1f}% of MACs (bound: the largest Linear layers)"
    return f"{integer} of {total}" + (", MAC share not recorded" if c["fp32"] else "")


def _int8_share() -> dict:
    p = ROOT / "docs/bench/compress/int8-share/results.json"      # python -m effdiff.bench.int8_share
    return json.loads(p.read_text()) if p.exists() else {}


_INT8_SHARE = _int8_share()


def _compress(name: str, r: dict) -> str:
    from . import compress
    return getattr(compress, name)(r)


def _peak(r: dict) -> str:
    peak = (r.get("info") or {}).get("peak_bytes")
    return "" if peak is None else f"{peak / 1e6:.1f} MB"


SOLVER_NAMES = {"ddim": "DDIM", "dpmpp-2m": "DPM-Solver++(2M)", "heun": "Heun"}
STUDENT_NAMES = {"progressive": "PD", "cd": "CD", "dmd": "DMD", "gd": "guidance-distilled", "lcm": "LCM",
                 "reflow": "reflow", "ct": "CT"}


def distill_label(r: dict) -> str:
    """A distill-suite row in words: 'teacher DDIM 8', 'PD student, 4 steps', '(reference)' marked."""
    gd = re.fullmatch(r"guidance-(?P<k>\d+)-w(?P<w>[\d.]+)", r["config"])
    if gd:
        return f"guidance-distilled student w={gd['w']}, DDIM {gd['k']} (one pass)"
    m = re.fullmatch(r"(?P<what>[a-z0-9-]+?)-(?P<k>\d+)", r["config"])
    if m is None:
        return r["config"]
    what, k = m["what"], int(m["k"])
    if what in SOLVER_NAMES:
        label = f"teacher {SOLVER_NAMES[what]} {k}"
    elif what in STUDENT_NAMES:
        label = f"{STUDENT_NAMES[what]} student, {k} step{'s' if k > 1 else ''}"
    else:
        return r["config"]
    g = r.get("guidance", 1.0)
    label = (f"CFG w={g:g}, " if g != 1.0 and what in SOLVER_NAMES else "") + label
    return label + (" (reference)" if r.get("reference") else "")


COLUMNS: dict[str, tuple[str, Callable]] = {
    "model": ("model", lambda r, ctx: r["model"]),
    "config": ("config", lambda r, ctx: r["config"]),
    "run": ("run", lambda r, ctx: r["config"]),
    "ft_params": ("trainable params (% of base)",
                  lambda r, ctx: f"{r['trainable_params']:,} ({100 * r['trainable_params'] / r['base_params']:.1f}%)"),
    "ft_file": ("file", lambda r, ctx: f"{r['file_bytes'] / 1000:.0f} KB" if r.get("file_bytes") else ""),
    "ft_steps": ("training steps", lambda r, ctx: f"{r['train_steps']:,}" if r.get("train_steps") else ""),
    "ft_train": ("train s (mean ± sd over training seeds)",
                 lambda r, ctx: pm(r["train_wall_s"], r.get("train_wall_s_sd")) if r.get("train_wall_s") else ""),
    "fd_target": ("FD vs held-out thick digits [95% CI]",
                  lambda r, ctx: f"{pm(r['fd_target'], r.get('fd_target_sd'))} [{r['fd_target_ci'][0]:.2f}, "
                                 f"{r['fd_target_ci'][1]:.2f}]"),
    "drun": ("run", lambda r, ctx: distill_label(r)),
    "rundir": ("bench run", lambda r, ctx: f"`{r['_source']}`" if r.get("_source") else ""),
    "nfe": ("NFE", lambda r, ctx: str(r["nfe"])),
    "guidance": ("guidance", lambda r, ctx: f"{r.get('guidance', 1.0):g}"),
    "ms": ("ms/sample", lambda r, ctx: pm(r["ms_per_sample"], r.get("ms_sd"))),
    "speedup": ("speed-up", lambda r, ctx: f"{r['speedup']:.1f}x"),
    "speedup_b": ("wall-clock speed-up", lambda r, ctx: f"{r['speedup_vs_baseline']:.2f}x" if "speedup_vs_baseline" in r else ""),
    "macs": ("MACs ratio", lambda r, ctx: macs_ratio(r, ctx["rows"])),
    "fd": ("FD", lambda r, ctx: pm(r["fd"], r.get("fd_sd"))),
    "fd_k": ("FD (held-out, {k} seeds)", lambda r, ctx: pm(r["fd"], r.get("fd_sd"))),
    "vs_ref": ("FD vs reference (paired, 95% CI)",
               lambda r, ctx: "reference" if r.get("reference") else change(r, "fd_vs_ref")),
    "change": ("FD change (95% CI)", lambda r, ctx: change(r)),
    "verdict": ("what the interval says", lambda r, ctx: verdict(r)),
    "fd_pixel": ("FD pixel", lambda r, ctx: pm(r["fd_pixel"], r.get("fd_pixel_sd"))),
    "acc": ("class acc", lambda r, ctx: _acc(r)),
    "mem": ("memorization (NN train/held-out)", lambda r, ctx: f"{r['mem_asymmetry']:.2f}"),
    "seeds": ("seeds", lambda r, ctx: _seed_span(r.get("seeds") or ctx["results"].get("seeds"))),
    "int8": ("layers in integer kernels", lambda r, ctx: _int8_fraction(r)),
    "bytes": ("bytes", lambda r, ctx: _compress("_bytes", r)),
    "peak": ("peak activations", lambda r, ctx: _peak(r)),
    "fd3": ("FD", lambda r, ctx: f"{r['fd']:.3f}"),
    "maxdev": ("max abs deviation", lambda r, ctx: f"{_info(r, 'max_dev_vs_baseline', 'max_dev_vs_single'):.2g}"),
    "comm": ("comm bytes/step (per rank)", lambda r, ctx: f"{_info(r, 'comm_bytes_per_step') / 1e3:.1f} kB"),
    "iters": ("parallel iterations", lambda r, ctx: str((r.get("info") or {}).get("iters", r["nfe"]))),
    "evals": ("per-sample evaluations", lambda r, ctx: str((r.get("info") or {}).get("nfe", r["nfe"]))),
    "steps": ("steps", lambda r, ctx: str(r["steps"])),
    "traj": ("trajectory error vs sequential", lambda r, ctx: f"{r['traj_err']:.4f}" if r.get("traj_err") else "0"),
    "saved": ("NFE saved", lambda r, ctx: str(_ref(r, ctx["rows"])["nfe"] - r["nfe"])),
    "slower": ("ms vs sequential", lambda r, ctx: f"{r['ms_per_sample'] / _ref(r, ctx['rows'])['ms_per_sample']:.1f}x"),
}
RIGHT = {"ft_params", "ft_file", "ft_steps", "ft_train", "fd_target", "comm", "maxdev", "peak", "fd3", "int8", "iters", "evals", "steps", "traj", "saved", "slower", "nfe",
         "guidance", "ms", "speedup", "speedup_b", "macs", "fd", "fd_k", "vs_ref", "change", "fd_pixel", "acc",
         "mem"}


def _info(r: dict, *keys: str) -> float:
    """The first of ``keys`` in the row's solver/technique info (0 when none is there)."""
    info = r.get("info") or {}
    return next((info[k] for k in keys if k in info), 0)


def _ref(r: dict, rows: list[dict]) -> dict:
    """The model's reference row (its baseline when it names one)."""
    name = r.get("baseline")
    return next(b for b in rows if b["model"] == r["model"] and (b["config"] == name if name else b.get("reference")))


def _seed_span(seeds) -> str:
    if not seeds:
        return ""
    s = sorted(seeds)
    return f"{s[0]}-{s[-1]}" if s == list(range(s[0], s[-1] + 1)) and len(s) > 2 else ", ".join(map(str, s))


def select(rows: list[dict], opts: dict) -> list[dict]:
    """Rows whose config matches ``where``, whose model is in ``model``, that have ``has``."""
    out = rows
    if "where" in opts:
        out = [r for r in out if re.search(opts["where"], r["config"])]
    if "model" in opts:
        out = [r for r in out if r["model"] in opts["model"].split("|")]
    if "has" in opts:
        out = [r for r in out if opts["has"] in r]
    return out


def _table(head: list[str], right: list[bool], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in body])


def render_rows(sources: list[dict], opts: dict) -> str:
    res = sources[0]
    rows = [{**r, "_source": s.get("_folder")} for s in sources for r in s[opts.get("list", "rows")]]   # in order
    cols = opts.get("cols", "model,config,nfe,ms,speedup,fd_k,vs_ref,fd_pixel,acc,mem").split(",")
    unknown = [c for c in cols if c not in COLUMNS]
    if unknown:
        raise KeyError(f"unknown column(s) {unknown}; known: {', '.join(COLUMNS)}")
    ctx = {"rows": rows, "results": res}
    k = len(res.get("seeds") or [])
    head = [COLUMNS[c][0].format(k=k) for c in cols]
    body = [[COLUMNS[c][1](r, ctx) for c in cols] for r in select(rows, opts)]
    return _table(head, [c in RIGHT for c in cols], body)


# ---- special tables -------------------------------------------------------------------------
def render_compress(sources: list[dict], opts: dict) -> str:
    """Rows x models: bytes, FD change and wall clock of each compress row, from the first source
    (in the order given) that holds the row for that model; ``rows`` lists them, ``seeds`` says whose."""
    models = opts.get("models", "digits-unet,digits-dit").split(",")
    labels = opts["rows"].split(",")
    from .compress import model_bytes
    head, right = ["row", "seeds"], [False, False]
    for m in models:
        head += [f"{m}: bytes", "FD change (95% CI)", "wall clock vs fp32"]
        right += [True, True, True]
    body = []
    for label in labels:
        line, seeds = [label], ""
        for m in models:
            r, src = next(((r, s) for s in sources for r in s["rows"] if r["model"] == m
                           and r["config"] == f"ddim-10+{label}"), (None, None))
            if r is None:
                line += ["", "", ""]
                continue
            seeds = seeds or _seed_span(r["seeds"])
            b = model_bytes(r)
            fake = "packed_bytes" in ((r.get("info") or {}).get("compress") or {})
            wall = f"{r['speedup_vs_baseline']:.2f}x"
            wall = "(simulated)" if fake else (f"({wall}, shared CPU)" if "prereg" in src else wall)
            line += ["" if b is None else f"{b / 1e6:.2f} MB", change(r), wall]
        body.append([line[0], seeds, *line[1:]])
    return _table(head, right, body)


def per_seed_speedups(curves: dict, trick: str) -> list[tuple[float | None, bool]]:
    """Per training seed: baseline steps / trick steps to that seed's own baseline final FD (paired by
    seed; linear between checkpoints), and whether the trick was there at its first checkpoint (a bound)."""
    from .training import steps_to_target
    base = {r["config"]["seed"]: r["points"] for r in curves["baseline"]}
    out = []
    for run in curves[trick]:
        bp, tp = base[run["config"]["seed"]], run["points"]
        target = bp[-1]["fd"]
        b = steps_to_target([p["step"] for p in bp], [p["fd"] for p in bp], target)
        t = steps_to_target([p["step"] for p in tp], [p["fd"] for p in tp], target)
        out.append((None if t is None else b / t, t == tp[0]["step"]))
    return out


def speedup_cell(per_seed) -> tuple[str, str]:
    """('a / b / c', '95% t-interval of the geometric mean') of per-seed speed-ups."""
    vals = " / ".join("not reached" if v is None else (f"≥ {v:.2f}" if bound else f"{v:.2f}") for v, bound in per_seed)
    if any(v is None for v, _ in per_seed):
        return vals, f"not reached on {sum(v is None for v, _ in per_seed)} of {len(per_seed)} seeds"
    if any(bound for _, bound in per_seed):
        return vals, "a bound (target met at the first checkpoint)"
    logs = [math.log(v) for v, _ in per_seed]
    lo, hi = t_interval(logs)
    return vals, f"{math.exp(mean_sd(logs)[0]):.2f}x [{math.exp(lo):.2f}, {math.exp(hi):.2f}]"


def render_training(sources: list[dict], opts: dict) -> str:
    """The training ablation: final FD and its paired change (t-interval), and the steps-to-target
    speed-up per training seed with the t-interval of its geometric mean (exact for 3 seeds: t with 2 df
    on log speed-ups; no bootstrap)."""
    abl = sources[0]
    head = ["trick", "FD at end (mean ± sd)", "FD change vs baseline (paired, 95% CI)",
            "speed-up (steps) per training seed", "geometric mean [95% t-interval, 2 df]",
            "speed-up (steps), seed-mean curves", "train s"]
    base = next(r for r in abl["rows"] if r["trick"] == "baseline")
    from .scoring import paired_change
    body = []
    for r in abl["rows"]:
        per = speedup_cell(per_seed_speedups(abl["curves"], r["trick"]))
        if r["trick"] == "baseline":
            ch = "(baseline)"
        else:
            c, ci = paired_change(r["fd_final_per_seed"], base["fd_final_per_seed"])
            ch = pct_ci(c, ci)
        mean_curve = ("--" if r.get("steps_to_target") is None else
                      ("≥ " if r.get("at_first") == "True" else "") + f"{r['speedup']:.2f}x")
        body.append([r["trick"], pm(r["fd_final"], r.get("fd_final_sd")), ch, per[0], per[1], mean_curve,
                     f"{r['train_s']:.0f}"])
    return _table(head, [False] + [True] * 6, body)


def render_curves(sources: list[dict], opts: dict) -> str:
    """The training ablation's seed-mean FD at every checkpoint, one row per trick."""
    rows = sources[0]["rows"]
    steps = rows[0]["steps"]
    body = [[r["trick"], *(f"{v:.1f}" for v in r["fd_curve"])] for r in rows]
    return _table(["trick", *map(str, steps)], [False] + [True] * len(steps), body)


def render_solvers(sources: list[dict], opts: dict) -> str:
    """Best per NFE budget: picked on the selection seeds; the fresh-seed FD and its paired change
    against the reference with a 95% t-interval from the per-seed re-measurement (second source)."""
    res, fresh = sources[0], (sources[1] if len(sources) > 1 else None)
    head = ["model", "NFE budget", "best config", "NFE", "candidates", "FD (selection seeds)", "FD (fresh seeds)",
            "FD vs reference (fresh, paired, 95% CI)", "trajectory error"]
    body = []
    for b in res["best_per_budget"]:
        cell = f"{100 * b['fd_vs_ref_fresh']:+.0f}% (no interval stored)"
        if "fd_vs_ref_fresh_ci" in b:
            cell = pct_ci(b["fd_vs_ref_fresh_paired"], b["fd_vs_ref_fresh_ci"])
        elif fresh is not None:
            r = next(x for x in fresh["rows"] if x["model"] == b["model"] and x["config"] == b["config"])
            cell = change(r, "fd_vs_ref")
        body.append([b["model"], str(b["budget"]), b["config"], str(b["nfe"]), str(b["candidates"]),
                     pm(b["fd"], b.get("fd_sd")), pm(b["fd_fresh"], b.get("fd_fresh_sd")), cell,
                     f"{b['traj_err']:.4f}"])
    return _table(head, [False, True, False] + [True] * 6, body)


def render_latent(sources: list[dict], opts: dict) -> str:
    """The timed latent-vs-pixel comparison (``studies latent-compare``'s latent_compare.json), as it printed it."""
    from .studies.latent import table
    return table(sources[0])


def render_latent_cost(sources: list[dict], opts: dict) -> str:
    """Cost per step of the pixel and the latent model of a latent_compare.json: parameters, MACs per
    evaluation, decode, MACs per sample at 20/10/5 steps (evaluations x steps + one decode), training MACs."""
    px, lt = sources[0]["rows"]
    m = lambda v: f"{v / 1e6:,.0f}M" if v >= 1e9 else f"{v / 1e6:.1f}M"       # noqa: E731
    per = lambda r, k: r["eval_macs"] * k + r["decode_macs"]                     # noqa: E731
    body = [["network parameters", f"{px['params'] / 1e6:.2f}M",
             f"{lt['params'] / 1e6:.2f}M (+{lt['autoencoder_params'] / 1e6:.2f}M autoencoder)", ""],
            ["MACs per evaluation", m(px["eval_macs"]), m(lt["eval_macs"]), f"{px['eval_macs'] / lt['eval_macs']:.1f}x"],
            ["decode, once per sample", "—", m(lt["decode_macs"]), ""]]
    for k in (sources[0]["steps"], 10, 5):
        what = f"MACs per sample, {sources[0]['solver']} {k} steps" if k == sources[0]["steps"] else f"MACs per sample, {k} steps"
        body.append([what, f"{per(px, k) / 1e6:,.0f}M", f"{per(lt, k) / 1e6:,.0f}M", f"{per(px, k) / per(lt, k):.1f}x"])
    body.append([f"training MACs per sample (forward + backward, batch {px['batch_size']} both)",
                 m(px["train_macs_per_sample"]), m(lt["train_macs_per_sample"]),
                 f"{px['train_macs_per_sample'] / lt['train_macs_per_sample']:.1f}x"])
    return _table(["", f"{px['model']} ({px['space']})", f"{lt['model']} ({lt['space']})", "ratio"],
                  [False, True, True, True], body)


def render_card_rows(sources: list[dict], opts: dict) -> str:
    """Zoo cards' headline numbers from their hashed results files (``bench.card_results``), one row per
    file, and the real-vs-real row of the first: FD, FD pixel, class accuracy, precision / recall, memorization."""
    head = ["model", "training", "FD held-out", "FD pixel", "class acc", "precision / recall",
            "memorization (NN ratio; copies)"]
    body = []
    for res in sources:
        p, m = res["protocol"], res["metrics"]
        tag = f"{p['solver']}_{p['schedule']}_{p['steps']}"
        g = lambda k: m[f"{k}_{tag}"]                                   # noqa: E731
        card = json.loads((ROOT / "src/effdiff/zoo/weights" / f"{res['model']}.json").read_text())["card"]
        body.append([res["model"], f"{card['steps']:,} steps x {card['batch_size']}",
                     pm(g("fd"), g("fd_sd")), pm(g("fd_pixel"), g("fd_pixel_sd")), f"{g('class_acc'):.3f}",
                     f"{g('precision'):.2f} / {g('recall'):.2f}", f"{g('mem_asymmetry'):.3f}; {g('mem_copy_fraction'):g}"])
    m = sources[0]["metrics"]
    body.append([f"real vs real ({sources[0]['protocol']['n']:,} training images)", "",
                 pm(m["real_vs_real_fd"], m["real_vs_real_fd_sd"]), pm(m["real_vs_real_fd_pixel"], m["real_vs_real_fd_pixel_sd"]),
                 f"{m['real_vs_real_class_acc']:.3f}", f"{m['real_vs_real_precision']:.2f} / {m['real_vs_real_recall']:.2f}",
                 f"{m['mem_asymmetry_real_' + tag]:.3f}" if "mem_asymmetry_real_" + tag in m else ""])
    return _table(head, [False, False] + [True] * 5, body)


METHOD_LABELS = {"lora": "LoRA r={rank}", "controlnet-xs": "ControlNet-XS", "controlnet": "ControlNet",
                 "t2i-adapter": "T2I-Adapter"}


def _zoo_card(name: str) -> dict:
    return json.loads((ROOT / "src/effdiff/zoo/weights" / f"{name}.json").read_text())


def render_finetune_mnist(sources: list[dict], opts: dict) -> str:
    """The MNIST fine-tunes (``studies finetune-eval-mnist MODEL --zoo``: the shipped adapters, whose SHA-256
    the file records): base, LoRA and control rows per model with mean ± sd [95% t-interval] over the sampling
    seeds; parameters, file size and training time from the adapters' cards and files; then the real-data
    comparison point and the merged-LoRA deviation."""
    from .. import zoo
    head = ["model", "method", "trainable params (% of base)", "file", "train s (300 steps, shared core)",
            "FD vs held-out thick MNIST", "edge IoU", "edge MSE", "FD vs held-out MNIST"]
    f2 = lambda st, d=2, ci=False: (f"{st['mean']:.{d}f} ± {st['sd']:.{d}f}"                    # noqa: E731
                                    + (f" [{st['ci95'][0]:.{d}f}, {st['ci95'][1]:.{d}f}]" if ci else ""))
    body = []
    for res in sources:
        base, rows = res["model"], res["rows"]
        base_params = sum(p.numel() for p in zoo.load(base).net.parameters())
        body.append([f"`{base}`", "base", "0", "", "", f2(rows["base"]["fd_thick"], ci=True),
                     f2(rows["base"]["edge_iou"], 3), f2(rows["base"]["edge_mse"], 3), f2(rows["base"]["fd"])])
        for name in res["weights_sha256"]:
            if name == base:
                continue
            card = _zoo_card(name)["card"]
            size = (ROOT / "src/effdiff/zoo/weights" / f"{name}.safetensors").stat().st_size
            label = METHOD_LABELS.get(card["method"], card["method"]).format(**card.get("method_args", {}))
            lead = [f"`{base}`", label, f"{card['trainable_params']:,} ({100 * card['trainable_params'] / base_params:.1f}%)",
                    f"{size / 1000:.0f} KB", f"{card['wall_time_s']:.0f}"]
            if card["method"] == "lora":
                body.append(lead + [f2(rows["lora"]["fd_thick"], ci=True), "", "", ""])
            else:
                body.append(lead + ["", f2(rows["control"]["edge_iou"], 3, ci=True), f2(rows["control"]["edge_mse"], 3),
                                    f2(rows["control"]["fd"])])
    real = sources[0]["rows"]["real_thick"]["fd_thick"]
    merged = max(v for r in sources for v in r["rows"]["lora_merged"]["max_abs_diff_vs_unmerged"]["per_seed"])
    return (_table(head, [False, False] + [True] * 7, body) + f"\n\n(Real thick training images against the held-out "
            f"thick split at the same n: FD {f2(real)}, seeds 0-2. Merged LoRA samples differ from unmerged ones by at "
            f"most {merged:.1e} after 20 steps.)")


def render_protocol(sources: list[dict], opts: dict) -> str:
    """The protocol check (``python -m effdiff.bench.protocol DATASET --out FILE``): copies, noisy copies and the real
    held-out half scored against the other half, mean ± sd over its seeds."""
    res = sources[0]
    sets = [("copier", "training copies"), ("noisy_copier", "copies + noise 0.1"), ("held_out", "real held-out half")]
    cell = lambda v: f"{v[0]:.2f}" if v[1] == 0 else pm(*v)          # noqa: E731
    body = [[label, *(cell(res[k][m]) for m in ("fd", "fd_pixel", "mem_asymmetry", "mem_copy_fraction",
                                                  "mem_closer_than_p5"))] for k, label in sets]
    head = ["set", f"FD ({res['net']})", "FD pixel", "memorization ratio", "copy fraction", "closer than p5"]
    return _table(head, [False] + [True] * 5, body)


def render_ot_toy(sources: list[dict], opts: dict) -> str:
    """``studies ot-toy``'s sliced W2 per coupling and Euler step count, mean ± sd over its training seeds."""
    summary = sources[0]["summary"]
    steps = sorted({int(k.split("euler-")[1]) for k in summary})
    body = [[f'`coupling="{c}"`', *(f"{summary[f'{c} euler-{n}'][0]:.3f} ± {summary[f'{c} euler-{n}'][1]:.3f}"
                                      for n in steps)] for c in dict.fromkeys(k.split(" ")[0] for k in summary)]
    return _table(["Euler steps", *map(str, steps)], [False] + [True] * len(steps), body)


def render_plan_followup(sources: list[dict], opts: dict) -> str:
    """A plan re-measured beside the configuration it was timed against (``verify_unet.py`` of
    docs/bench/plan/suite-power-4): per seed set, each one's FD change vs the reference (95% CI; "holds" when its
    upper end is within the budget) and the paired difference plan - best single; ``decide=KEY`` names the seed
    set the pre-registered rule judges."""
    d = sources[0]
    body = []
    for key, row in d.items():
        if not (isinstance(row, dict) and "plan_minus_best_single" in row):
            continue
        n = len(row["plan"]["values"])
        seeds = f"{row['seeds'][0]}-{row['seeds'][1]} ({n}{', the decision' if key == opts.get('decide') else ''})"
        cells = [f"{row[k]['text']}{': holds' if row[k]['holds'] else ''}" for k in ("plan", "best_single")]
        body.append([seeds, *cells, row["plan_minus_best_single"]["text"]])
    return _table(["seeds", f"plan ({d['plan']})", f"best single ({d['best_single']})", "plan - best single, paired"],
                  [False, True, True, True], body)


def render_students_dev(sources: list[dict], opts: dict) -> str:
    """Students scored the planner's way on development seeds (``docs/bench/plan/students/kd.py``): per
    student (with its results file's name), its steps, the seeds, the FD change vs the plan reference (95% CI, paired by seed) and the commit
    that scored it (``(src dirty)`` when the scoring tree had uncommitted source edits)."""
    body = []
    for d in sources:
        seeds = f"{d['seeds'][0]}-{d['seeds'][-1]} ({len(d['seeds'])})"
        for r in d["rows"]:
            body.append([f"`{d.get('_file', '-')}`", f"`{r['student']}`", str(r["steps"]), d["model"], seeds, r["text"],
                         f"{d['commit'][:7]}{' (src dirty)' if d['dirty'] else ''}"])
    return _table(["results file", "student (scored as)", "steps", "teacher", "seeds (n = 200 each)",
                   f"FD change vs {sources[0]['reference']}", "commit"], [False, False, True, False, False, True, False],
                  body)


# ---- inline values --------------------------------------------------------------------------
def value_count(sources, opts) -> str:
    return str(len(select(sources[0][opts.get("list", "rows")], opts)))


def value_change(sources, opts) -> str:
    rows = select(sources[0]["rows"], opts)
    if len(rows) != 1:
        raise ValueError(f"kind=change needs exactly one row, {len(rows)} match {opts}")
    return change(rows[0], opts.get("key", "fd_change"))


def value_verdicts(sources, opts) -> str:
    """'config: +x% [lo, hi] (verdict); ...' for the selected rows."""
    key = opts.get("key", "fd_change")
    rows = select(sources[0]["rows"], opts)
    return "; ".join(f"{r['model'].replace('digits-', '')} {r['config']} {change(r, key)} ({verdict(r, key)})"
                     for r in rows)


def value_range(sources, opts) -> str:
    """'lo to hi' of a key over the selected rows (e.g. speedups), formatted by ``fmt``."""
    rows = select(sources[0][opts.get("list", "rows")], opts)
    vals = [_get(r, opts["key"]) for r in rows]
    if "over" in opts:
        vals = [v / _get(r, opts["over"]) for v, r in zip(vals, rows)]
    fmt = opts.get("fmt", "{:.1f}")
    return f"{fmt.format(min(vals))}-{fmt.format(max(vals))}"


def value_ratio(sources, opts) -> str:
    """'lo-hix' of key(row) / refkey(model's reference row) over the selected rows (``key`` may be a
    dotted path with a fallback after '|', e.g. ``info.nfe|nfe``)."""
    rows = sources[0]["rows"]
    sel = select([r for r in rows if not r.get("reference")], opts)
    ratios = [_get(r, opts["key"]) / _get(_ref(r, rows), opts.get("refkey", opts["key"])) for r in sel]
    fmt = opts.get("fmt", "{:.1f}")
    return f"{fmt.format(min(ratios))}-{fmt.format(max(ratios))}x"


def value_halfwidth(sources, opts) -> str:
    """'lo-hi%' of the 95% intervals' half-widths (percentage points) over the selected rows."""
    key = opts.get("key", "fd_change")
    hw = [100 * (r[key + "_ci"][1] - r[key + "_ci"][0]) / 2 for r in select(sources[0]["rows"], opts)
          if r.get(key + "_ci") and r[key + "_ci"][0] is not None]
    return f"{min(hw):.0f}-{max(hw):.0f}%"


def value_pair(sources, opts) -> str:
    """Row ``a`` against row ``b`` of the same run, paired by seed: '+x% [lo, hi] (verdict)'."""
    from .scoring import paired_change
    rows = {r["config"]: r for r in select(sources[0]["rows"], opts)}
    a, b = rows[opts["a"]], rows[opts["b"]]
    if a["seeds"] != b["seeds"]:
        raise ValueError(f"rows {opts['a']} and {opts['b']} ran on different seeds")
    c, ci = paired_change(a["fd_per_seed"], b["fd_per_seed"])
    return f"{pct_ci(c, ci)} ({verdict({'fd_change': c, 'fd_change_ci': ci})})"


def value_diff(sources, opts) -> str:
    """Row ``a`` minus row ``b`` of ``key``'s per-seed values (paired by seed): 'mean [95% t-interval]'."""
    rows = {r["config"]: r for r in sources[0]["rows"]}
    a, b = rows[opts["a"]], rows[opts["b"]]
    if a["seeds"] != b["seeds"]:
        raise ValueError(f"rows {opts['a']} and {opts['b']} ran on different seeds")
    d = [x - y for x, y in zip(a[opts["key"]], b[opts["key"]])]
    lo, hi = t_interval(d)
    return f"{mean_sd(d)[0]:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def value_pm(sources, opts) -> str:
    """'mean ± sd' of a [mean, sd] pair at a dotted ``key`` of the file (house rounding)."""
    m, sd = _get(sources[0], opts["key"])
    return pm(m, sd)


def _get(r: dict, key: str):
    if "|" in key:
        for k in key.split("|"):
            try:
                return _get(r, k)
            except (KeyError, TypeError):
                continue
        raise KeyError(key)
    for part in key.split("."):
        r = r[part]
    return r


def render_video(sources: list[dict], opts: dict) -> str:
    """The video bench's tables (``part=cost|quality|sparse``), rendered by ``effdiff.bench.video``."""
    from .video import render
    return render(sources, opts)


def render_video_student(sources: list[dict], opts: dict) -> str:
    """The few-step video student's table, rendered by ``effdiff.bench.video_student``."""
    from .video_student import table
    return table(sources[0])


KINDS: dict[str, Callable] = {"video": render_video, "video_student": render_video_student, "curves": render_curves, "rows": render_rows, "compress": render_compress, "training": render_training,
                              "solvers": render_solvers, "latent": render_latent,
                              "latent_cost": render_latent_cost, "card_rows": render_card_rows,
                              "finetune_mnist": render_finetune_mnist, "count": value_count, "change": value_change,
                              "verdicts": value_verdicts, "range": value_range,
                              "ratio": value_ratio, "pair": value_pair,
                              "halfwidth": value_halfwidth, "diff": value_diff,
                              "protocol": render_protocol, "pm": value_pm,
                              "ot_toy": render_ot_toy, "plan_followup": render_plan_followup,
                              "students_dev": render_students_dev}


# ---- blocks in files ------------------------------------------------------------------------
def parse(args: str) -> tuple[list[str], dict]:
    parts = shlex.split(args)
    return [p for p in parts if "=" not in p], dict(p.split("=", 1) for p in parts if "=" in p)


def render(args: str, root: Path = ROOT, cache: dict | None = None) -> str:
    files, opts = parse(args)
    cache = {} if cache is None else cache
    sources = []
    for f in files:
        if f not in cache:
            path = root / f
            if not path.exists():
                raise FileNotFoundError(f"table source {f} does not exist (cited by <!-- ... {args} -->)")
            cache[f] = json.loads(path.read_text())
            if isinstance(cache[f], dict):
                cache[f].setdefault("_folder", path.parent.name)      # the run folder, for the rundir column
                cache[f].setdefault("_file", path.stem)
        sources.append(cache[f])
    return KINDS[opts.get("kind", "rows")](sources, opts)


def regenerate(text: str, root: Path = ROOT, cache: dict | None = None) -> str:
    """``text`` with every block's body replaced by what its arguments render."""
    def one(m):
        body = render(m.group("args"), root, cache)
        body = f"\n{body}\n" if m.group("tag") == "table" else body
        return m.group("open") + body + m.group("close")
    return BLOCK.sub(one, text)


def files(root: Path = ROOT) -> list[Path]:
    return sorted({p for g in DOC_GLOBS for p in root.glob(g)})


def stale(root: Path = ROOT) -> list[tuple[Path, str]]:
    """(file, first differing block's arguments) for every file whose blocks differ from their render."""
    out, cache = [], {}
    for f in files(root):
        text = f.read_text()
        if "<!-- table:" not in text and "<!-- value:" not in text:
            continue
        new = regenerate(text, root, cache)
        if new != text:
            old_blocks, new_blocks = BLOCK.findall(text), BLOCK.findall(new)
            diff = next((a[2] for a, b in zip(old_blocks, new_blocks) if a != b), "?")
            out.append((f, diff))
    return out


def write(root: Path = ROOT) -> list[Path]:
    from ..io import atomic_write
    changed, cache = [], {}
    for f in files(root):
        text = f.read_text()
        new = regenerate(text, root, cache)
        if new != text:
            atomic_write(f, new)
            changed.append(f)
    return changed


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m effdiff.bench.tables", description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--check", action="store_true", help="exit 1 naming every file whose tables differ")
    g.add_argument("--write", action="store_true", help="regenerate every marked table in place")
    a = ap.parse_args(argv)
    if a.write:
        for f in write():
            print("rewrote", f.relative_to(ROOT))
        return
    bad = stale()
    for f, args in bad:
        print(f"{f.relative_to(ROOT)}: table differs from its results ({args})")
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
