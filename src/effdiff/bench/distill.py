"""``effdiff bench --suite distill``: few-step students against their teacher.

Per teacher (digits-unet, digits-dit): the teacher's reference, DPM-Solver++(2M) with 10 steps
(not the default suite's DDPM-1000: 100x the cost, and no better on either zoo model's card),
teacher solvers at 1-8 steps (DDIM, DPM-Solver++(2M)) and
every student found (consistency students at 1, 2 and 4 steps, the others at their own): zoo models whose metadata names this teacher (``student`` section), and
student checkpoints listed in ``$EFFDIFF_DISTILL_STUDENTS`` (colon-separated path stems). Each
student row starts from the same noise as the teacher rows (rescaled to its grid's σ_max), so its
FD change vs the reference is paired. The report adds the training cost from the student's card
(teacher NFE, student steps, wall time) and ``fd_vs_nfe.png``: FD vs NFE of teacher solvers and
students on one figure.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .. import zoo
from ..sampling import sample
from .config import BenchConfig, register_suite
from .scoring import pct_ci, pm

TEACHERS = ("digits-unet", "digits-dit")
REFERENCE = ("dpmpp-2m-10", "dpmpp-2m", "logsnr", 10)
CARDS: dict[tuple[str, str], dict] = {}        # (model, row label) -> the student's card


def root_teacher(card: dict, _depth: int = 0) -> str | None:
    """The model at the root of a student's teacher chain: ``card["root_teacher"]`` when recorded,
    else its ``teacher``, followed through teachers that are themselves students (a zoo student or a
    path stem whose JSON has a ``student`` section, e.g. PD's DDIM tail distilled from a PD student).
    A teacher that cannot be read is returned as named."""
    if card.get("root_teacher"):
        return card["root_teacher"]
    t = card.get("teacher")
    if not t or _depth >= 32:
        return t
    if t in zoo.names():
        meta = zoo.card(t)
    else:
        path = Path(f"{t}.json")
        if not path.is_file():
            return t
        meta = json.loads(path.read_text())
    if "student" not in meta:
        return t
    return root_teacher(meta.get("card", {}), _depth + 1)


def students_for(model: str) -> dict[str, tuple[str, int]]:
    """Row label -> (student: zoo name or path stem, steps) for the students of ``model``: zoo
    students and ``$EFFDIFF_DISTILL_STUDENTS`` whose root teacher (``root_teacher``) is ``model``."""
    from ..distill import load
    found = [n for n in zoo.names() if n.startswith(model + "-") and "student" in zoo.card(n)]
    found += [p for p in os.environ.get("EFFDIFF_DISTILL_STUDENTS", "").split(":") if p]
    out = {}
    for ref in found:
        st = load(ref)
        if root_teacher(st.meta["card"]) != model:
            continue
        for n in ((1, 2, 4) if st.spec.solver == "consistency" else (st.spec.steps,)):
            label = f"{st.spec.method}-{n}" + (f"-w{st.spec.guidance:g}" if st.spec.w_embed else "")
            out[label] = (ref, n)
            CARDS[(model, label)] = st.meta["card"]
    return out


class _StudentRow:
    """Samples a student from the row's noise, rescaled to the student's own σ_max."""

    def __init__(self, ref: str, steps: int):
        self.ref, self.steps, self.student = ref, steps, None

    def generate(self, den, D, x, sigmas, labels, seed):
        from ..distill import load
        if self.student is None:
            self.student = load(self.ref)
        st = self.student
        grid = st.grid(self.steps)
        x = x / float(sigmas[0]) * float(grid[0])
        return sample(st, x, grid, st.spec.solver, labels, seed=seed, return_info=True)


def configs(model: str, quick: bool) -> list[BenchConfig]:
    name, solver, sched, steps = REFERENCE
    rows = [BenchConfig(model, name, solver, sched, steps, reference=True)]
    for n in ((4,) if quick else (1, 2, 4, 8)):
        rows.append(BenchConfig(model, f"ddim-{n}", "ddim", "uniform", n, baseline=name))
        if n > 1:
            rows.append(BenchConfig(model, f"dpmpp-2m-{n}", "dpmpp-2m", "logsnr", n, baseline=name))
    for label, (ref, n) in students_for(model).items():
        rows.append(BenchConfig(model, label, f"student-{label.split('-')[0]}", "uniform", n, baseline=name,
                                generate=_StudentRow(ref, n).generate))
    return rows


def report(results: dict, out: Path) -> str:
    from ..viz import quality_vs_nfe_plot
    quality_vs_nfe_plot(results["rows"], out / "fd_vs_nfe.png")
    k = len(results["seeds"])
    lines = [f"Students vs their teacher's reference (same noise; FD vs held-out, {k} seeds, paired 95% CI):", "",
             "| model | run | NFE | ms/sample | speed-up vs ref | FD | FD change vs ref | class acc | memorization "
             "| teacher NFE | student steps | wall time |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["rows"]:
        card = CARDS.get((r["model"], r["config"]), {})
        cost = (f"{card['teacher_nfe']:,} | {card['steps']} | {card['wall_time_s']:.0f} s" if card else " | | ")
        change = pct_ci(r["fd_change"], r.get("fd_change_ci")) if "fd_change" in r else "(reference)"
        acc = "" if r.get("class_acc") is None else f"{100 * r['class_acc']:.1f}%"
        lines.append(f"| {r['model']} | {r['config']} | {r['nfe']} | {pm(r['ms_per_sample'], r.get('ms_sd'))} | "
                     f"{r['speedup']:.1f}x | {pm(r['fd'], r.get('fd_sd'))} | {change} | {acc} | "
                     f"{r['mem_asymmetry']:.2f} | {cost} |")
    text = "\n".join(lines)
    (out / "distill.md").write_text(text + "\n")
    return text


register_suite("distill", configs, report=report)


_distill = configs    # the old private name
