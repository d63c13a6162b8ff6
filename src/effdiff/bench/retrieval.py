"""``effdiff bench --suite retrieval``: truncated sampling by retrieval (survey §3.3.5) against the
full DDIM run it shortens: ReDi (continue from a retrieved later trajectory state) and
retrieval-guided initialization (start part-way from a stored sample); NFE saved and quality."""
from __future__ import annotations

from pathlib import Path

from .. import retrieval as R
from ..sampling import randn, sample
from .config import BenchConfig, register_suite, save_table
from .scoring import pct_ci, pm

STEPS, KB_SIZE = 20, 2000
_kb: dict = {}


def _knowledge(den, sig, shape):
    """One knowledge base per model: KB_SIZE of the model's own trajectories on other seeds."""
    key = (den.meta["card"]["preset"], len(sig))
    if key not in _kb:
        import torch
        labels = torch.arange(KB_SIZE) % 10
        kb = R.KnowledgeBase.build(den, KB_SIZE, sig, 4, 12, shape=shape, cond=labels, seed=10_000)
        x = randn((KB_SIZE, *shape), seed=20_000) * sig[0].float()
        stored = sample(den, x, sig, solver="ddim", cond=labels)
        _kb[key] = (kb, stored, labels)
    return _kb[key]


def _redi(k: int):
    def gen(den, D, x, sig, labels, seed):
        kb, _, _ = _knowledge(den, sig, tuple(x.shape[1:]))
        return R.redi_sample(D, kb, x, sig, cond=labels, solver="ddim", k=k, per_class=True, seed=seed)
    return gen


def _init(skip: int):
    def gen(den, D, x, sig, labels, seed):
        _, stored, stored_labels = _knowledge(den, sig, tuple(x.shape[1:]))
        return R.retrieval_init(D, stored, x / sig[0].float(), sig, float(sig[skip]), cond=labels,
                                stored_labels=stored_labels, per_class=True, seed=seed, solver="ddim")
    return gen


def _retrieval(model: str, quick: bool) -> list[BenchConfig]:
    base = f"ddim-{STEPS}"
    rows = [BenchConfig(model, base, "ddim", "uniform", STEPS, reference=True, traj_ref=True)]
    for k in (1, 4):
        rows.append(BenchConfig(model, f"redi-4to12-k{k}", "ddim", "uniform", STEPS, baseline=base, generate=_redi(k)))
    for skip in (5, 10):
        rows.append(BenchConfig(model, f"retrieval-init-skip{skip}", "ddim", "uniform", STEPS, baseline=base,
                                generate=_init(skip)))
    return rows


def report(results: dict, out: Path) -> str:
    lines = [f"Retrieval against the full {STEPS}-step DDIM (knowledge base: {KB_SIZE} of the model's own "
             "trajectories on other seeds, retrieval within the requested class):", "",
             "| model | run | NFE | NFE saved | FD | FD change [95% CI] | class acc | memorization | ms / sample |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["rows"]:
        saved = STEPS - r["nfe"]
        change = pct_ci(r["fd_change"], r.get("fd_change_ci")) if "fd_change" in r else "-"
        lines.append(f"| {r['model']} | {r['config']} | {r['nfe']} | {saved} | {pm(r['fd'], r.get('fd_sd'))} | "
                     f"{change} | {100 * r['class_acc']:.1f}% | {r['mem_asymmetry']:.2f} | "
                     f"{pm(r['ms_per_sample'], r.get('ms_sd'))} |")
    return save_table(out, "retrieval.md", lines)


register_suite("retrieval", _retrieval, report=report)
