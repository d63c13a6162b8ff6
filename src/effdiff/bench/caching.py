"""``effdiff bench --suite caching``: every registered caching and early-exit technique
(``effdiff.techniques``) and compatible pairs, at 20 and 50 steps with a first-order (DDIM) and a
second-order (DPM-Solver++(2M)) solver; MACs ratio, wall-clock speed-up and FD change against the
uncached run of the same solver and steps.

Techniques come from the registry: each runs on the primary models (digits-unet, digits-dit) it
applies to; one that fits neither (TGATE needs cross-attention) runs on the first other suite
model it fits. ``VARIANTS`` names the configurations benchmarked per technique (default: its
default config); a pair is a list of technique names. Trained or calibrated parts (block-caching
schedules, the L2C router, DeeDiff heads) are prepared on 32 samples of other noise. NIRVANA's
rows serve each measured request from a cache warmed by one earlier request with the same labels
and other noise, skipping K = steps/2 steps.
"""
from __future__ import annotations

from pathlib import Path

from .. import techniques as T
from .. import zoo
from ..caching import (AdaptiveCacheConfig, BlockCachingConfig, DeepCacheConfig, DeltaDiTConfig, FORAConfig,
                       NirvanaConfig, TGATEConfig)
from ..early_exit import ASEConfig, DeeDiffConfig
from ..sampling import randn
from .config import SUITE_MODELS, BenchConfig, register_suite, save_table
from .scoring import pct_ci, pm

PRIMARY = ("digits-unet", "digits-dit")
FAMILIES = ("caching", "early-exit")
QUICK = ("deepcache-N3", "fora-N3", "tgate")

# technique -> {row label: steps -> config}
VARIANTS = {
    "deepcache": {**{f"deepcache-N{n}": (lambda n: lambda s: DeepCacheConfig(interval=n))(n) for n in (2, 3, 5)},
                  "deepcache-nonuniform-N3": lambda s: DeepCacheConfig(interval=3, nonuniform=True),
                  # full steps on 40% of the steps, power-law dense towards the last (low-noise) steps
                  "deepcache-end-dense-40%": lambda s: DeepCacheConfig(nonuniform=True, center=-1, power=1.5,
                                                                       full_fraction=0.4)},
    "fora": {f"fora-N{n}": (lambda n: lambda s: FORAConfig(interval=n))(n) for n in (2, 3, 5)},
    "delta-dit": {"delta-dit": lambda s: DeltaDiTConfig(interval=2, num_blocks=2)},
    "block-caching": {"block-caching-0.2": lambda s: BlockCachingConfig(0.2)},
    "adaptive": {"adaptive-0.1": lambda s: AdaptiveCacheConfig(0.1)},
    "tgate": {"tgate": lambda s: TGATEConfig(gate_step=s // 2)},
    "ase": {"early-exit-ase-1": lambda s: ASEConfig(max_drop=1)},
    "deediff": {"early-exit-deediff-0.12": lambda s: DeeDiffConfig(threshold=0.12)},
    "nirvana": {"nirvana-K50%": lambda s: NirvanaConfig(k_choices=(s // 2,))},
}
# compositions: row label -> (technique names in apply order, steps -> name -> config)
PAIRS = {
    # DeepCache keeps branch 1 live; block caching works inside it, on disjoint sites
    "deepcache-b1+block-caching": (["deepcache", "block-caching"], lambda s: {
        "deepcache": DeepCacheConfig(interval=3, branch=1),
        "block-caching": BlockCachingConfig(0.2, blocks=("input_blocks.1", "output_blocks.2"))}),
    "fora-attn-N3+delta-dit": (["delta-dit", "fora"], lambda s: {
        "delta-dit": DeltaDiTConfig(interval=2, num_blocks=2), "fora": FORAConfig(interval=3, mlp=False)}),
}


def _hosts(t: T.Technique, dens: dict) -> list[str]:
    """The suite models (name -> denoiser) ``t`` is benchmarked on."""
    fits = [m for m, den in dens.items() if t.applies_to(den)]
    return [m for m in fits if m in PRIMARY] or fits[:1]


class _Row:
    """One benchmarked composition: ``setup`` prepares and applies it, ``generate`` samples through
    its handle (request-level caches route requests; hook-based ones are plain ``ed.sample``)."""

    def __init__(self, names: list[str], configs, solver: str):
        self.names, self.configs, self.solver, self.handle = names, configs, solver, None

    def setup(self, den, sigmas, x, labels):
        calib = T.Run(randn(x[:32].shape, seed=12345) * sigmas[0].float(), sigmas, self.solver, labels[:32])
        wanted = self.configs(len(sigmas) - 1)
        configs = {n: T.get(n).prepare(den, wanted.get(n), calib) for n in self.names}
        self.handle = T.apply(self.names, den, configs)
        if self.handle.routes_requests:
            other = randn(tuple(x.shape), seed=12345) * sigmas[0].float()   # an earlier request
            self.handle.sample(den, other, sigmas, self.solver, labels)
        return self.handle

    def generate(self, den, D, x, sigmas, labels, seed):
        return self.handle.sample(D, x, sigmas, self.solver, labels, seed=seed, return_info=True)


def rows_for(model: str) -> dict[str, tuple[list[str], object]]:
    """Row label -> (technique names, steps -> name -> config) of ``model`` in this suite."""
    dens = {m: zoo.load(m) for m in dict.fromkeys(SUITE_MODELS["caching"] + [model])}
    hosts = {t.name: _hosts(t, dens) for t in (T.get(n) for f in FAMILIES for n in T.names(f))}
    rows = {}
    for t in (T.get(n) for n in hosts):
        if model in hosts[t.name]:
            for label, make in VARIANTS.get(t.name, {t.name: lambda s: None}).items():
                rows[label] = ([t.name], (lambda t, make: lambda s: {t.name: make(s)})(t, make))
    for label, (names, make) in PAIRS.items():
        if all(model in hosts[n] for n in names):
            rows[label] = (names, make)
    return rows


def suite_configs(model: str, quick: bool) -> list[BenchConfig]:
    """The caching suite's rows of one model (baselines and every cache / early-exit variant)."""
    out, variants = [], rows_for(model)
    solvers = ("ddim",) if quick else ("ddim", "dpmpp-2m")
    scale = 2.0 if any("tgate" in names for names, _ in variants.values()) else None   # TGATE acts on guidance
    for steps in ((20,) if quick else (20, 50)):
        for solver in solvers:
            base = f"{solver}-{steps}"
            out.append(BenchConfig(model, base, solver, "uniform", steps, reference=not out, guidance=scale))
            for label, (names, configs) in variants.items():
                if quick and not label.startswith(QUICK):
                    continue
                row = _Row(names, configs, solver)
                out.append(BenchConfig(model, f"{base}+{label}", solver, "uniform", steps, baseline=base,
                                       guidance=scale, setup=row.setup, generate=row.generate))
    return out


def report(results: dict, out: Path) -> str:
    seeds = results.get("seeds") or []
    rvr = results.get("real_vs_real", {}).get("digits")
    lines = ["Caching: each method against the uncached run of the same solver and steps (same noise, same seeds "
             f"{seeds}; FD mean ± sd over seeds; FD change paired by seed with its 95% t-interval — an interval "
             "containing 0 is no measurable difference):", ""]
    if rvr:
        lines += [f"Comparison point: real-vs-real FD {pm(rvr['fd'], rvr['fd_sd'])} (n = {rvr['n']}).", ""]
    lines += ["| model | run | guidance | MACs ratio | wall-clock speed-up | FD | FD change (95% CI) |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for r in results["rows"]:
        if "macs_ratio" in r:      # guidance: TGATE's rows and their baselines run guided (issue 24)
            lines.append(f"| {r['model']} | {r['config']} | {r['guidance']:g} | {r['macs_ratio']:.2f}x | "
                         f"{r['speedup_vs_baseline']:.2f}x | "
                         f"{pm(r['fd'], r.get('fd_sd'))} | {_change(r)} |")
    return save_table(out, "caching.md", lines)


def _change(r: dict) -> str:
    """The paired change; a row whose samples are the same on every seed (a retrieval cache serving
    every request from what the warm-up stored) has no seed spread of its own, so no interval."""
    if len(set(r.get("fd_per_seed") or [])) == 1 and len(r["fd_per_seed"]) > 1:
        return f"{100 * r['fd_change']:+.0f}% (same samples on every seed: served from the cache; no CI)"
    return pct_ci(r["fd_change"], r.get("fd_change_ci"))


register_suite("caching", suite_configs, models=["digits-unet", "digits-dit", "digits-dit-xattn"], report=report)
