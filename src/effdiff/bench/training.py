"""``effdiff bench --suite training``: what each training trick buys, in steps to a target quality.

One small preset (``ABLATION``: a 3-block DiT on 8x8 digits, flow matching with uniform t, batch 64)
is trained for a fixed budget of steps by the baseline and by each trick of ``TRICKS`` (TrainConfig
overrides), on the training seeds ``SEEDS``. At every ``1/EVALS`` of the budget the run's EMA
export samples ``N_EVAL`` class-balanced images (DPM-Solver++(2M), 10 logSNR steps, guidance 1,
noise seeded by the training seed, so tricks are paired) and ``metrics.score`` gives their FD
against held-out digits. Then, per trick:

- steps to target: where the seed-mean FD curve first reaches the target (linear between
  checkpoints), the target being the baseline's final seed-mean FD (``--`` when not reached);
- speed-up = baseline steps / trick steps, with a 95% percentile bootstrap interval over training
  seeds (seeds resampled together for baseline and trick, the target recomputed per resample);
- the same on training wall time (noisy when the core is shared), and the final FD change vs the
  baseline paired by seed (``scoring.paired_change``).

Every run is a Trainer run directory under ``$EFFDIFF_TRAINING_RUNS`` (default ``runs/training``;
``--quick``: ``runs/training-quick``, 60 steps, 1 seed, 2 tricks) with its curve beside it
(``TRICK-sSEED.json``): a killed study re-run with the same command resumes every unfinished run
from its last checkpoint and retrains nothing finished. Tricks the trainer does not know yet are
skipped with the reason in the report. The bench runner then scores each trick's final models on
the usual protocol (rows ``train-TRICK``; ``digits-dit`` only lends the shapes and σ grid).
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .. import zoo
from ..io import atomic_write
from ..training.priorgrad import start
from ..training.tricks import TRICKS as NAMED
from ..training.trainer import TrainConfig, trainer_class
from .config import BenchConfig, register_suite, save_table
from .scoring import labels_for, mean_sd, paired_change, pct_ci, pm

BUDGET, EVALS, SEEDS, N_EVAL = 1000, 5, (0, 1, 2), 360
QUICK = dict(budget=60, evals=2, seeds=(0,), n=100, tricks=("baseline", "lognormal"))
SOLVER, SCHEDULE, SOLVER_STEPS = "dpmpp-2m", "logsnr", 10

ABLATION = TrainConfig(
    name="digits-dit-ablate", task="diffusion", arch="dit",
    model={"patch_size": 2, "hidden_size": 48, "depth": 3, "num_heads": 3, "num_classes": 10},
    process={"name": "flow"}, prediction="velocity", loss={"density": "uniform"},
    steps=BUDGET, batch_size=64, lr=2e-3, warmup=100, ema_decay=0.999, p_uncond=0.1, seed=0, ckpt_every=BUDGET // EVALS)

# TrainConfig overrides: dicts merge into the preset's dicts (``loss``, ``model``), other values replace
_LOGNORMAL = {"density": "lognormal", "density_args": {"p_mean": 0.0, "p_std": 1.0}}   # SD3's logit-normal t
_LAPLACE = {"density": "laplace"}
TRICKS: dict[str, dict] = {          # in the order they run (a study cut short has the first ones)
    "baseline": {},
    "min-snr": NAMED["min-snr"],
    "lognormal": {"loss": _LOGNORMAL},
    "lognormal+min-snr": {"loss": {**_LOGNORMAL, **NAMED["min-snr"]["loss"]}},
    "immiscible": NAMED["immiscible"],
    "ot": NAMED["ot"],
    "priorgrad": NAMED["priorgrad"],
    "repa": NAMED["repa"],
    "ema-power": NAMED["ema-power"],
    "laplace": {"loss": _LAPLACE},
    "lognormal+ot": {"loss": _LOGNORMAL, **NAMED["ot"]},
    "laplace+ema-power": {"loss": _LAPLACE, **NAMED["ema-power"]},
}


def _merge(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        out = copy.deepcopy(base)
        for k, v in over.items():
            out[k] = _merge(out.get(k), v)
        return out
    return copy.deepcopy(over)


def trick_config(trick: str, seed: int, budget: int = BUDGET, evals: int = EVALS,
                 base: TrainConfig = ABLATION) -> TrainConfig:
    """The preset with ``TRICKS[trick]`` applied, trained ``budget`` steps with a checkpoint every
    ``budget / evals`` (``TypeError`` for a field TrainConfig does not have)."""
    if budget % evals:
        raise ValueError(f"budget {budget} must be a multiple of evals {evals}")
    over = {k: _merge(getattr(base, k, None), v) for k, v in TRICKS[trick].items()}
    return replace(base, name=f"{base.name}-{trick}", seed=seed, steps=budget, ckpt_every=budget // evals,
                   warmup=min(base.warmup, budget // 10), **over)


def check_trick(trick: str, budget: int = BUDGET, evals: int = EVALS) -> str | None:
    """None when the trainer accepts the trick, else why not (a trick being implemented elsewhere)."""
    try:
        cfg = trick_config(trick, 0, budget, evals)
        trainer_class(cfg)(cfg, "unused-probe", progress=False)        # builds; writes nothing
    except (TypeError, ValueError, KeyError, NotImplementedError) as e:
        return f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"
    return None


# ---- steps to target and the bootstrap --------------------------------------------------------
def steps_to_target(steps, values, target: float) -> float | None:
    """Where the curve ``values`` at ``steps`` first reaches ``target`` (≤), linear between the two
    checkpoints around the crossing; the first checkpoint if it is already there; None if never."""
    prev = None
    for s, v in zip(steps, values):
        if v <= target:
            if prev is None:
                return float(s)
            s0, v0 = prev
            return s0 + (s - s0) * (v0 - target) / (v0 - v)
        prev = (float(s), float(v))
    return None


def _ratio(base_fd: np.ndarray, fd: np.ndarray, base_x, x, target: float | None) -> float:
    """base / trick steps (or seconds) to target on seed-mean curves; 0 when the trick never gets there."""
    t = base_fd[-1] if target is None else target
    b, s = steps_to_target(base_x, base_fd, t), steps_to_target(x, fd, t)
    if b is None:
        return math.nan
    return 0.0 if s is None else b / s


def speedup(base: list[list[float]], trick: list[list[float]], steps: list[float],
            base_x: list[list[float]] | None = None, trick_x: list[list[float]] | None = None,
            target: float | None = None, n_boot: int = 2000, rng_seed: int = 0) -> dict:
    """Steps-to-target speed-up of ``trick`` over ``base`` (FD curves [seeds][checkpoints], paired
    by seed) with a 95% percentile bootstrap interval over seeds.

    ``target`` None: the baseline's final seed-mean FD, recomputed in every resample. The x axis is
    ``steps`` (shared) or per-seed ``base_x`` / ``trick_x`` (e.g. wall seconds at each checkpoint),
    averaged over the resampled seeds. A trick that never reaches the target counts as speed-up 0
    (it sorts below every reached value, so the percentile interval stays valid).
    """
    B, T = np.asarray(base, float), np.asarray(trick, float)
    if B.shape != T.shape or B.ndim != 2:
        raise ValueError(f"base and trick curves must both be [seeds, checkpoints], got {B.shape} and {T.shape}")
    k = B.shape[0]
    bx = np.broadcast_to(np.asarray(steps, float), B.shape) if base_x is None else np.asarray(base_x, float)
    tx = np.broadcast_to(np.asarray(steps, float), T.shape) if trick_x is None else np.asarray(trick_x, float)

    def one(idx):
        return _ratio(B[idx].mean(0), T[idx].mean(0), bx[idx].mean(0), tx[idx].mean(0), target)

    everyone = np.arange(k)
    tgt = float(B.mean(0)[-1]) if target is None else float(target)
    point = one(everyone)
    rng = np.random.default_rng(rng_seed)
    boots = np.array([one(rng.integers(0, k, k)) for _ in range(n_boot)])
    boots = boots[~np.isnan(boots)]
    ci = [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))] if k > 1 and len(boots) else [None, None]
    to = steps_to_target(tx.mean(0), T.mean(0), tgt)
    return {"target": tgt, "speedup": point, "ci": ci, "reached": point > 0,
            "base_to_target": steps_to_target(bx.mean(0), B.mean(0), tgt), "to_target": to,
            "at_first": to is not None and to == tx.mean(0)[0]}     # reached by the first checkpoint: a bound


# ---- one run: train in segments, evaluate at each checkpoint ----------------------------------
def runs_root(quick: bool) -> Path:
    root = Path(os.environ.get("EFFDIFF_TRAINING_RUNS", "runs/training"))
    return root.with_name(root.name + "-quick") if quick else root


def _ckpt_step(run_dir: Path) -> int | None:
    p = run_dir / "checkpoint.json"
    return int(json.loads(p.read_text())["step"]) if p.exists() else None


def evaluate(model_stem: Path, seed: int, n: int) -> dict:
    """FD vs held-out (and friends) of ``n`` class-balanced samples of an exported model."""
    from ..metrics import score
    from ..recipes import sample_model
    den = zoo.from_checkpoint(model_stem)
    labels = labels_for(n, den.meta.get("num_classes", 0))
    with torch.no_grad():
        out = sample_model(den, n, SOLVER, SCHEDULE, SOLVER_STEPS, seed=seed, cond=labels, own_grid=False).result.x
    q = score(out, labels, dataset="digits", seed=seed, real_vs_real=False)
    return {k: q[k] for k in ("fd", "fd_pixel", "class_acc") if q.get(k) is not None}


def train_curve(cfg: TrainConfig, run_dir, n: int = N_EVAL, log=None) -> dict:
    """Train ``cfg`` in ``run_dir`` (resuming), evaluating the EMA export at every checkpoint;
    the curve (``run_dir`` + ``.json``) is written after each point, so a kill loses one segment."""
    run_dir = Path(run_dir)
    curve_path = run_dir.with_name(run_dir.name + ".json")     # a dotted run name keeps its dots
    curve = {"config": cfg.to_json(), "n": n, "points": []}
    if curve_path.exists():
        old = json.loads(curve_path.read_text())
        if old["config"] != curve["config"] or old["n"] != n:
            raise ValueError(f"{curve_path} was written for another configuration; move it (and {run_dir}) away")
        curve = old
    done = {p["step"] for p in curve["points"]}
    for step in range(cfg.ckpt_every, cfg.steps + 1, cfg.ckpt_every):
        if step in done:
            continue
        tr = trainer_class(cfg)(cfg, run_dir, progress=False)
        have = _ckpt_step(run_dir)
        if have is not None and have > step:
            raise ValueError(f"{run_dir} is at step {have}, past the missing evaluation at {step}")
        t0 = time.perf_counter()
        if have is None:
            tr.run(stop_after=step)
        elif have < step:
            tr.run(resume=True, stop_after=step)
        else:
            tr.prepare(resume=True)
        wall = time.perf_counter() - t0
        stem = tr.export()
        t1 = time.perf_counter()
        q = evaluate(stem, cfg.seed, n)
        curve["points"].append({"step": tr.step, "train_s": round(tr.elapsed, 2), **q,
                                "eval_s": round(time.perf_counter() - t1, 2), "segment_wall_s": round(wall, 2)})
        atomic_write(curve_path, json.dumps(curve, indent=1))
        if log:
            log(f"{cfg.name} seed {cfg.seed} step {tr.step}: FD {q['fd']:.2f} (train {tr.elapsed:.0f} s)")
    curve["model"] = str(run_dir / "model")
    return curve


@dataclass
class Study:
    """The ablation: ``run()`` trains (or resumes) every supported trick on every seed."""
    tricks: tuple = tuple(TRICKS)
    seeds: tuple = SEEDS
    budget: int = BUDGET
    evals: int = EVALS
    n: int = N_EVAL
    root: Path = field(default_factory=lambda: runs_root(False))
    verbose: bool = True
    curves: dict = field(default_factory=dict)          # trick -> [curve per seed]
    skipped: dict = field(default_factory=dict)         # trick -> reason
    notes: dict = field(default_factory=dict)           # extra lines / numbers for the report

    def log(self, msg: str):
        if self.verbose:
            print(msg, flush=True)

    def run(self) -> "Study":
        for trick in self.tricks:
            self.run_trick(trick)
        return self

    def run_trick(self, trick: str) -> list[dict] | None:
        if trick in self.curves or trick in self.skipped:
            return self.curves.get(trick)
        why = check_trick(trick, self.budget, self.evals)
        if why is not None:
            self.skipped[trick] = why
            self.log(f"skipping {trick}: {why}")
            return None
        root = Path(self.root)
        root.mkdir(parents=True, exist_ok=True)
        try:
            self.curves[trick] = [train_curve(trick_config(trick, s, self.budget, self.evals), root / f"{trick}-s{s}",
                                              self.n, self.log) for s in self.seeds]
        except (FloatingPointError, ValueError, RuntimeError) as e:   # one trick failing does not end the study
            if trick == "baseline":
                raise
            self.skipped[trick] = f"failed: {type(e).__name__}: {' '.join(str(e).split())[:160]}"
            self.log(f"{trick} failed: {e}")
            return None
        return self.curves[trick]

    def load(self) -> "Study":
        """The finished runs only (no training): tricks whose every seed has its whole curve."""
        for trick in self.tricks:
            curves = []
            for s in self.seeds:
                path = Path(self.root) / f"{trick}-s{s}.json"
                if not path.exists():
                    break
                c = json.loads(path.read_text())
                cfg = trick_config(trick, s, self.budget, self.evals)
                if c["config"] != cfg.to_json() or c["n"] != self.n or len(c["points"]) < self.evals:
                    break
                curves.append({**c, "model": str(path.with_suffix("") / "model")})
            if len(curves) == len(self.seeds):
                self.curves[trick] = curves
            else:
                self.skipped.setdefault(trick, "not run yet (or unfinished)")
        return self

    def table_rows(self) -> list[dict]:
        """One dict per trick: final FD, paired change, steps/seconds to target with speed-ups."""
        if "baseline" not in self.curves:
            raise ValueError("the study has no baseline runs")
        base = self.curves["baseline"]
        steps = [p["step"] for p in base[0]["points"]]
        fd = {t: [[p["fd"] for p in c["points"]] for c in cs] for t, cs in self.curves.items()}
        secs = {t: [[p["train_s"] for p in c["points"]] for c in cs] for t, cs in self.curves.items()}
        rows = []
        for t in self.curves:
            finals, base_finals = [c[-1] for c in fd[t]], [c[-1] for c in fd["baseline"]]
            s = speedup(fd["baseline"], fd[t], steps)
            w = speedup(fd["baseline"], fd[t], steps, secs["baseline"], secs[t])
            row = {"trick": t, "overrides": TRICKS.get(t, {}), "seeds": list(self.seeds), "steps": steps,
                   "fd_curve": np.mean(fd[t], 0).tolist(), "fd_curve_sd": np.std(fd[t], 0, ddof=1).tolist()
                   if len(self.seeds) > 1 else [0.0] * len(steps),
                   "train_s_curve": np.mean(secs[t], 0).tolist(),
                   "fd_final": mean_sd(finals)[0], "fd_final_sd": mean_sd(finals)[1], "fd_final_per_seed": finals,
                   "target": s["target"], "steps_to_target": s["to_target"], "speedup": s["speedup"],
                   "at_first": s["at_first"] and t != "baseline",
                   "speedup_ci": s["ci"], "s_to_target": w["to_target"], "wall_speedup": w["speedup"],
                   "wall_speedup_ci": w["ci"], "train_s": mean_sd([c[-1] for c in secs[t]])[0]}
            if t != "baseline":
                row["fd_change"], row["fd_change_ci"] = paired_change(finals, base_finals)
            rows.append(row)
        return rows


# ---- report --------------------------------------------------------------------------------
def _x(v, ci=None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    s = "not reached" if v == 0 else f"{v:.2f}x"
    if ci and ci[0] is not None:
        lo, hi = ("0 (not reached)" if c == 0 else f"{c:.2f}" for c in ci)
        s += f" [{lo}, {hi}]"
    return s


def markdown(rows: list[dict], skipped: dict, budget: int, n: int) -> list[str]:
    k = len(rows[0]["seeds"]) if rows else 0
    tgt = rows[0]["target"] if rows else float("nan")
    lines = [f"Training ablation: `{ABLATION.name}` ({ABLATION.arch}, flow matching, batch {ABLATION.batch_size}), "
             f"{budget} steps, {k} training seed(s); FD vs held-out digits of the EMA, n={n}, {SOLVER} "
             f"{SOLVER_STEPS} steps, at every {budget // max(1, len(rows[0]['steps']) if rows else 1)} steps. "
             f"Target = the baseline's final seed-mean FD ({tgt:.2f}); speed-up = baseline steps / trick steps to "
             "it, 95% bootstrap interval over seeds. Wall-time columns: training seconds on the machine as it was "
             "(a shared core: noisy). ≤ / ≥: the target was already met at the first checkpoint, so the "
             "speed-up is a lower bound.", "",
             "| trick | FD at end (mean ± sd) | FD change vs baseline (paired, 95% CI) | steps to target | "
             "speed-up (steps) | train s | s to target | speed-up (wall) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        change = "(baseline)" if r["trick"] == "baseline" else pct_ci(r["fd_change"], r["fd_change_ci"])
        bound = "≤ " if r.get("at_first") else ""          # already there at the first checkpoint
        to = "--" if r["steps_to_target"] is None else f"{bound}{r['steps_to_target']:.0f}"
        sto = "--" if r["s_to_target"] is None else f"{r['s_to_target']:.0f}"
        lines.append(f"| {r['trick']} | {pm(r['fd_final'], r['fd_final_sd'], cap=2)} | {change} | {to} | "
                     f"{'≥ ' if bound else ''}{_x(r['speedup'], r['speedup_ci'])} | {r['train_s']:.0f} | {sto} | "
                     f"{_x(r['wall_speedup'])} |")
    for t, why in skipped.items():
        lines.append(f"| {t} | skipped: {why} | | | | | | |")
    tricks = [r for r in rows if r["trick"] != "baseline"]
    if tricks:
        fast = [r for r in tricks if r["speedup"] >= 1.5]
        sure = [r["trick"] for r in fast if r["speedup_ci"][0] is not None and r["speedup_ci"][0] >= 1.5]
        best = max(tricks, key=lambda r: r["speedup"])
        if not fast:
            verdict = (f"No trick reaches a 1.5x steps-to-target speed-up at this scale, not even as a point "
                       f"estimate (best: {best['trick']}, {_x(best['speedup'], best['speedup_ci'])}).")
        else:
            verdict = (f"Point estimate ≥ 1.5x: {', '.join(r['trick'] for r in fast)}; with the whole 95% interval "
                       f"at or above 1.5x: {', '.join(sure) if sure else 'none'}.")
        lines += ["", verdict]
    return lines


def curves_plot(rows: list[dict], path, target: float | None = None) -> Path:
    """FD (seed mean, ± sd band) vs training steps and vs training seconds, one line per trick."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ..viz import save_figure
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=110)
    for r in rows:
        m, sd = np.array(r["fd_curve"]), np.array(r["fd_curve_sd"])
        style = dict(color="k", lw=2) if r["trick"] == "baseline" else dict(lw=1.2, ls="--" if "+" in r["trick"] else "-")
        line, = axes[0].plot(r["steps"], m, marker="o", ms=3, label=r["trick"], **style)
        axes[0].fill_between(r["steps"], m - sd, m + sd, color=line.get_color(), alpha=0.12)
        axes[1].plot(r["train_s_curve"], m, marker="o", ms=3, label=r["trick"], color=line.get_color(),
                     lw=style["lw"], ls=style.get("ls", "-"))
    for ax, xl in zip(axes, ("training steps", "training seconds (shared core: noisy)")):
        if target is not None:
            ax.axhline(target, color="gray", ls="--", lw=1, label="target (baseline final)")
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("FD vs held-out (EMA)")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7, ncol=2)
    axes[0].set_title("learning curves (mean ± sd over seeds)")
    axes[1].set_title("the same vs wall time")
    return save_figure(fig, path)


def prior_only_fd(n: int = N_EVAL, seeds=SEEDS) -> list[float]:
    """FD of PriorGrad's prior itself, μ_c + s_c ε with no network (what a PriorGrad curve starts from)."""
    from .. import data
    from ..metrics import score
    from ..training import priorgrad
    x, y = data.dataset("digits", "train")
    mean, std = priorgrad.class_statistics(x, y, 10)
    labels = labels_for(n, 10)
    out = []
    for s in seeds:
        eps = torch.randn((n, *x.shape[1:]), generator=torch.Generator().manual_seed(s))
        out.append(score(mean[labels] + std[labels] * eps, labels, dataset="digits", seed=s, real_vs_real=False)["fd"])
    return out


def write_report(study: Study, out) -> str:
    out = Path(out)
    rows = study.table_rows()
    if "priorgrad" in study.curves:
        fds = prior_only_fd(study.n, study.seeds)
        study.notes["prior_only_fd"] = fds
        study.notes["prior_only"] = (f"PriorGrad's prior alone (μ_c + s_c ε, no network): FD "
                                     f"{pm(*mean_sd(fds), cap=2)} over the same seeds and n.")
    curves_plot(rows, out / "learning_curves.png", rows[0]["target"])
    atomic_write(out / "training_ablation.json",
                 json.dumps({"rows": rows, "skipped": study.skipped, "notes": study.notes, "budget": study.budget,
                             "n": study.n,
                             "preset": ABLATION.to_json(), "curves": study.curves}, indent=1, default=str))
    lines = markdown(rows, study.skipped, study.budget, study.n)
    lines += [""] + [v for v in study.notes.values() if isinstance(v, str)] if study.notes else []
    return save_table(out, "training.md", lines)


# ---- the bench suite -------------------------------------------------------------------------
_STUDIES: dict[bool, Study] = {}
_CURRENT: list[Study] = []           # the study of this process's bench run (its follow-up and report use it)


def study_for(quick: bool) -> Study:
    if quick not in _STUDIES:
        q = QUICK if quick else {}
        _STUDIES[quick] = Study(tricks=q.get("tricks", tuple(TRICKS)), seeds=q.get("seeds", SEEDS),
                                budget=q.get("budget", BUDGET), evals=q.get("evals", EVALS), n=q.get("n", N_EVAL),
                                root=runs_root(quick))
    _CURRENT[:] = [_STUDIES[quick]]
    return _STUDIES[quick]


class _Row:
    """A trick's final EMA models, one per training seed; sampling seed s uses training seed s mod k."""

    def __init__(self, study: Study, trick: str):
        self.study, self.trick, self.models = study, trick, []

    def setup(self, den, sigmas, x, labels):
        self.models = [zoo.from_checkpoint(c["model"]) for c in self.study.curves[self.trick]]
        return self

    def generate(self, den, D, x, sigmas, labels, seed):
        from ..sampling import sample
        m = self.models[seed % len(self.models)]
        return sample(m, start(m, x, labels), sigmas, solver=SOLVER, cond=labels, seed=seed, return_info=True)

    def remove(self):
        pass


def _training(model: str, quick: bool) -> list[BenchConfig]:
    """Trains (or resumes) the whole study first, then one row per trick that trained."""
    st = study_for(quick).run()
    rows = []
    for trick in st.curves:
        row = _Row(st, trick)
        rows.append(BenchConfig(model, f"train-{trick}", SOLVER, SCHEDULE, SOLVER_STEPS, reference=trick == "baseline",
                                baseline=None if trick == "baseline" else "train-baseline",
                                setup=row.setup, generate=row.generate))
    return rows


def _follow_up(results: dict, configs, _measure) -> None:
    st = _CURRENT[0] if _CURRENT else None
    if st is not None and "baseline" in st.curves:
        results["training"] = {"rows": st.table_rows(), "skipped": st.skipped, "budget": st.budget}


def report(results: dict, out: Path) -> str:
    st = _CURRENT[0] if _CURRENT else None
    if st is None or "baseline" not in st.curves:
        return ""
    return write_report(st, out)


register_suite("training", _training, models=["digits-dit"], report=report, follow_up=_follow_up)


def main(argv=None) -> int:
    """``python -m effdiff.bench.training --runs DIR --out DIR [--train]``: the report of the finished
    runs (``--train``: train / resume the rest first, without the bench's sampling rows)."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m effdiff.bench.training", description=main.__doc__)
    p.add_argument("--runs", default=str(runs_root(False)))
    p.add_argument("--out", required=True)
    p.add_argument("--train", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    st = Study(root=Path(a.runs))
    st = st.run() if a.train else st.load()
    print(write_report(st, a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
