"""Feature caching (survey §4.3) as one framework: every method in METHODS must be exact when
its schedule computes every step, leave no trace once removed, run under multi-stage, SDE and
guided sampling with reuse actually happening, keep nothing between generations, compose with
another method on other sites, and report its cache's memory. Add a method by adding a Method."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest
import torch

import effdiff as ed
from effdiff.caching import (AdaptiveCacheConfig, BlockCachingConfig, DeepCacheConfig, DeltaDiTConfig, FORAConfig,
                             apply_adaptive_cache, apply_block_caching, apply_deepcache, apply_delta_dit, apply_fora,
                             calibrate_block_caching)
from effdiff.caching.policies import window_steps
from effdiff.hooks import ModelHook, add_hook, hooks_of, remove_hook
from effdiff.sampling import current_context

STEPS, B = 8, 4


@dataclass
class Method:
    """apply(den, full, run) -> Handle; full=True: a schedule that computes every step; run: the
    sampling call (x, sigmas, solver, cond, denoiser) for methods that calibrate on one."""
    name: str
    zoo: str
    apply: Callable


def _block_caching(den, full, run):
    c = calibrate_block_caching(den, run["x"], run["sigmas"], BlockCachingConfig(threshold=0.0 if full else 1.0,
                                scale_shift=True), denoiser=run["denoiser"], solver=run["solver"], cond=run["cond"],
                                seed=run.get("seed"))
    return apply_block_caching(den, c)


METHODS = [
    Method("deepcache", "digits-unet", lambda den, full, run: apply_deepcache(den, DeepCacheConfig(1 if full else 3))),
    Method("fora", "digits-dit", lambda den, full, run: apply_fora(den, FORAConfig(1 if full else 2))),
    Method("block-caching-unet", "digits-unet", _block_caching),
    Method("block-caching-dit", "digits-dit", _block_caching),
    Method("delta-dit", "digits-dit", lambda den, full, run: apply_delta_dit(den, DeltaDiTConfig(1 if full else 2, 2))),
    Method("adaptive-unet", "digits-unet",
           lambda den, full, run: apply_adaptive_cache(den, AdaptiveCacheConfig(0.0 if full else 1.0))),
    Method("adaptive-dit", "digits-dit",
           lambda den, full, run: apply_adaptive_cache(den, AdaptiveCacheConfig(0.0 if full else 1.0))),
    Method("adaptive-dit-modulated", "digits-dit",
           lambda den, full, run: apply_adaptive_cache(den, AdaptiveCacheConfig(0.0 if full else 1.0,
                                                                                 "modulated-input"))),
]
IDS = [m.name for m in METHODS]
_MODELS: dict[str, object] = {}


def model(name):
    if name not in _MODELS:
        _MODELS[name] = ed.zoo.load(name)
    return _MODELS[name]


def run_of(den, solver="ddim", batch=B, seed=0, guided=False):
    sig = ed.timesteps.uniform_t(STEPS, den.process)
    x = ed.sampling.randn((batch, 1, 8, 8), seed=seed) * sig[0].float()
    cond = (torch.arange(batch) + seed) % 10
    return dict(x=x, sigmas=sig, solver=solver, cond=cond, seed=seed, denoiser=ed.CFG(den, 2.0) if guided else den)


def sample(run):
    return ed.sample(run["denoiser"], run["x"], run["sigmas"], solver=run["solver"], cond=run["cond"], seed=run["seed"])


def hook_state(den):
    return [(type(m).__name__, "forward" in m.__dict__, hasattr(m, "_effdiff_hooks"), tuple(hooks_of(m)))
            for m in den.modules()]


def reuses(h) -> int:
    return h.stats.get("reused", 0)


# ---- (a) a schedule that computes every step is exact -----------------------------------------

@pytest.mark.parametrize("m", METHODS, ids=IDS)
def test_full_schedule_is_bit_identical(m):
    den = model(m.zoo)
    run = run_of(den)
    ref = sample(run)
    with m.apply(den, True, run) as h:
        out = sample(run)
    assert reuses(h) == 0 and h.stats.get("computed", 0) > 0
    assert torch.equal(out, ref)


# ---- (b) removing the handle restores the exact original model ---------------------------------

@pytest.mark.parametrize("m", METHODS, ids=IDS)
def test_remove_restores_original(m):
    den = model(m.zoo)
    run = run_of(den)
    before, ref = hook_state(den), sample(run)
    h = m.apply(den, False, run)
    assert hook_state(den) != before
    cached = sample(run)
    assert reuses(h) > 0 and not torch.equal(cached, ref)
    h.remove()
    assert hook_state(den) == before
    assert all("forward" not in mod.__dict__ and not hooks_of(mod) for mod in den.modules())
    assert torch.equal(sample(run), ref)


# ---- (c) multi-stage, SDE and guided sampling ---------------------------------------------------

class StageSpy(ModelHook):
    name = "stage-spy"

    def __init__(self):
        self.seen = set()

    def __call__(self, module, call_next, *args, **kwargs):
        ctx = current_context()
        if ctx is not None:
            self.seen.add((ctx.stage, ctx.branch))
        return call_next(*args, **kwargs)


@pytest.mark.parametrize("solver,guided", [("heun", False), ("ddpm", False), ("ddim", True)],
                         ids=["heun", "ddpm", "cfg"])
@pytest.mark.parametrize("m", METHODS, ids=IDS)
def test_runs_under_solvers_and_guidance(m, solver, guided):
    den = model(m.zoo)
    run = run_of(den, solver, guided=guided)
    spy, first = StageSpy(), den.net.modules().__next__()
    add_hook(first, spy)
    try:
        with m.apply(den, False, run) as h:
            out = sample(run)
    finally:
        remove_hook(first, "stage-spy")
    assert torch.isfinite(out).all() and out.shape == run["x"].shape
    assert reuses(h) > 0, h.stats
    if solver == "heun":
        assert (1, "cond") in spy.seen
    if guided:
        assert {b for _, b in spy.seen} == {"cfg"}


# ---- (d) nothing carries over from one generation to the next -----------------------------------

@pytest.mark.parametrize("m", METHODS, ids=IDS)
def test_no_state_across_generations(m):
    den = model(m.zoo)
    run_a, run_b = run_of(den, batch=B, seed=0), run_of(den, batch=3, seed=5)
    with m.apply(den, False, run_a) as h:
        sample(run_a)
        out_b = sample(run_b)
    fresh = ed.zoo.load(m.zoo)
    run_a["denoiser"] = run_b["denoiser"] = fresh
    with m.apply(fresh, False, run_a):          # same method (same calibration run)
        ref_b = sample(run_b)
    assert reuses(h) > 0
    assert torch.equal(out_b, ref_b)


# ---- (e) two methods on different sites compose; removing one keeps the other --------------------

def _compose(den, run, make_a, make_b):
    alone_a = _alone(den, run, make_a)
    alone_b = _alone(den, run, make_b)
    ha, hb = make_a(den), make_b(den)
    both = sample(run)
    assert reuses(ha) > 0 and reuses(hb) > 0
    assert not torch.equal(both, alone_a) and not torch.equal(both, alone_b)
    ha.remove()
    assert torch.equal(sample(run), alone_b)
    ha = make_a(den)
    hb.remove()
    assert torch.equal(sample(run), alone_a)
    ha.remove()
    assert all(not hooks_of(mod) for mod in den.modules())


def _alone(den, run, make):
    with make(den):
        return sample(run)


def test_fora_attn_composes_with_delta_dit():
    den = model("digits-dit")
    _compose(den, run_of(den), lambda d: apply_fora(d, FORAConfig(2, mlp=False, blocks=(2, 3))),
             lambda d: apply_delta_dit(d, DeltaDiTConfig(2, 2)))


def test_deepcache_composes_with_block_caching_on_other_blocks():
    den = model("digits-unet")
    run = run_of(den)
    c = calibrate_block_caching(den, run["x"], run["sigmas"], BlockCachingConfig(0.3, blocks=("input_blocks.1",
                                "output_blocks.2")), solver="ddim", cond=run["cond"])
    _compose(den, run, lambda d: apply_deepcache(d, DeepCacheConfig(3, branch=1)),
             lambda d: apply_block_caching(d, c))


# ---- (f) memory reporting --------------------------------------------------------------------------

@pytest.mark.parametrize("m", METHODS, ids=IDS)
def test_store_bytes(m):
    den = model(m.zoo)
    run = run_of(den)
    h, during = m.apply(den, False, run), []
    ed.sample(den, run["x"], run["sigmas"], solver="ddim", cond=run["cond"],
              callback=lambda info: during.append(h.store.nbytes()))
    assert min(during) > 0 and h.store.nbytes() > 0 and h.store.peak_bytes >= max(during)
    h.remove()
    assert h.store.nbytes() == 0


# ---- (g) quality sanity ------------------------------------------------------------------------------

def test_deepcache_quality_on_digits_unet():
    """DeepCache N=3 on 50 DDIM steps stays close to the uncached samples (data range [-1, 1]).
    Measured on the zoo model: RMSE 0.017 (max 0.13, output rms 0.85, 231 of 350 deep-block calls
    reused); the bound leaves ~3x room for retrained weights."""
    den = model("digits-unet")
    sig = ed.timesteps.uniform_t(50, den.process)
    x, y = ed.sampling.randn((20, 1, 8, 8), seed=0) * sig[0].float(), torch.arange(20) % 10
    ref = ed.sample(den, x, sig, solver="ddim", cond=y)
    with apply_deepcache(den, DeepCacheConfig(interval=3)) as h:
        out = ed.sample(den, x, sig, solver="ddim", cond=y)
    assert h.stats["reused"] > 0
    assert (out - ref).pow(2).mean().sqrt() < 0.05


# ---- method-specific checks ---------------------------------------------------------------------------

def test_block_caching_schedule_and_errors():
    den = model("digits-dit")
    run = run_of(den)
    with pytest.raises(ValueError, match="calibrate"):
        apply_block_caching(den, BlockCachingConfig())
    c = calibrate_block_caching(den, run["x"], run["sigmas"], BlockCachingConfig(0.3), solver="ddim", cond=run["cond"])
    assert c.num_steps == STEPS and set(c.schedule) == {f"blocks.{i}" for i in range(len(den.net.blocks))}
    assert all(s[0] == 0 and s == sorted(s) for s in c.schedule.values())
    assert any(len(s) < STEPS for s in c.schedule.values())
    full = calibrate_block_caching(den, run["x"], run["sigmas"], BlockCachingConfig(0.0), solver="ddim",
                                   cond=run["cond"])
    assert all(s == list(range(STEPS)) for s in full.schedule.values())
    with apply_block_caching(den, c), pytest.raises(ValueError, match="calibrated for 8 steps"):
        ed.sample(den, run["x"], ed.timesteps.uniform_t(5, den.process), solver="ddim", cond=run["cond"])
    with pytest.raises(ValueError, match="unknown block"):
        calibrate_block_caching(den, run["x"], run["sigmas"], BlockCachingConfig(blocks=("nope",)))


def test_delta_dit_stage_windows():
    # early stage [0, b) caches the rear span, late stage [b, n) the front span, each every N from its start
    assert window_steps(10, 2, 0, 5) == {0, 2, 4, 5, 6, 7, 8, 9}
    assert window_steps(10, 2, 5, 10) == {0, 1, 2, 3, 4, 5, 7, 9}
    den = model("digits-dit")
    with pytest.raises(ValueError, match="num_blocks"):
        apply_delta_dit(den, DeltaDiTConfig(num_blocks=4))
    run = run_of(den)
    with apply_delta_dit(den, DeltaDiTConfig(2, 2)) as h:   # 8 steps, b=4: 2 + 2 reused span evaluations
        sample(run)
    assert h.stats["reused"] == 4 and h.stats["computed"] == 12


def test_adaptive_reuse_fraction_and_errors():
    den = model("digits-unet")
    with pytest.raises(ValueError, match="probe"):
        apply_adaptive_cache(den, AdaptiveCacheConfig(probe="modulated-input"))
    run = run_of(den)
    fractions = []
    for th in (0.05, 0.3, 10.0):
        with apply_adaptive_cache(den, AdaptiveCacheConfig(th)) as h:
            sample(run)
        fractions.append(h.stats["reuse_fraction"])
    assert fractions == sorted(fractions) and fractions[-1] == (STEPS - 1) / STEPS


def test_deepcache_end_dense_schedule_and_bad_fraction():
    from effdiff.caching.policies import nonuniform_steps
    steps = nonuniform_steps(50, 20, 49, 1.5)
    assert len(steps) == 20 and steps[0] == 0 and steps[-1] >= 47
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    assert gaps[0] > gaps[-1]                       # denser towards the end
    den = ed.zoo.load("digits-unet")
    with pytest.raises(ValueError, match="full_fraction"):
        apply_deepcache(den, DeepCacheConfig(nonuniform=True, full_fraction=0.0))
