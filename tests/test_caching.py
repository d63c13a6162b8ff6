"""Feature caching and early exit (survey §4.3, §3.3.3) as one framework. The matrix is the
technique registry: every registered caching / early-exit technique that applies to a test model
must be exact with its ``exact`` config, leave no trace once removed, run under multi-stage, SDE
and guided sampling while actually saving work (``eager`` config), keep nothing between
generations, and report its cache's memory. Register a technique and it is tested here."""
from __future__ import annotations

import gc
import threading

import pytest
import torch

import effdiff as ed
from effdiff import techniques as T
from effdiff.caching import (AdaptiveCacheConfig, BlockCachingConfig, DeepCacheConfig, DeltaDiTConfig, FORAConfig,
                             apply_adaptive_cache, apply_block_caching, apply_deepcache, apply_delta_dit, apply_fora,
                             calibrate_block_caching)
from effdiff.caching.policies import window_steps
from effdiff.context import current_context
from effdiff.hooks import CacheStats, ModelHook, add_hook, hooks_of, remove_hook
from effdiff.sites import dit_blocks

STEPS, B = 8, 4
ZOO = ("digits-unet", "digits-dit", "digits-dit-xattn")
_MODELS: dict[str, object] = {}
_PREPARED: dict[tuple, object] = {}


def model(name):
    if name not in _MODELS:
        _MODELS[name] = ed.zoo.load(name)
    return _MODELS[name]


def _matrix():
    """(technique, zoo model): each technique on the first two models it applies to."""
    rows = []
    for name in T.names("caching") + T.names("early-exit"):
        fits = [z for z in ZOO if T.get(name).applies_to(model(z))][:2]
        assert fits, f"{name} applies to no test model"
        rows += [(name, z) for z in fits]
    return rows


MATRIX = _matrix()
IDS = [f"{n}-{z}" for n, z in MATRIX]


def run_of(den, solver="ddim", batch=B, seed=0, guided=False):
    sig = ed.timesteps.uniform_t(STEPS, den.process)
    x = ed.sampling.randn((batch, 1, 8, 8), seed=seed) * sig[0].float()
    cond = (torch.arange(batch) + seed) % 10
    return dict(x=x, sigmas=sig, solver=solver, cond=cond, seed=seed, denoiser=ed.CFG(den, 2.0) if guided else den)


def config(name, zoo, mode):
    """The registry's ``exact`` or ``eager`` config, prepared (calibrated / trained) when needed."""
    key = (name, zoo, mode)
    if key not in _PREPARED:
        t, den = T.get(name), model(zoo)
        c = (t.exact if mode == "exact" else t.eager)(STEPS)
        r = run_of(den, seed=11)                 # calibrate / train on other noise than the tests use
        _PREPARED[key] = t.prepare(den, c, T.Run(r["x"], r["sigmas"], "ddim", r["cond"]), num_samples=8, iters=30)
    return _PREPARED[key]


def apply(name, zoo, mode, den=None):
    return T.get(name).apply(den if den is not None else model(zoo), config(name, zoo, mode))


def sample(run, h=None):
    args = (run["denoiser"], run["x"], run["sigmas"], run["solver"], run["cond"])
    return h.sample(*args, seed=run["seed"]) if h is not None else ed.sample(*args, seed=run["seed"])


def other_noise(run):
    """The same request with other initial noise (request-level caches hit on it)."""
    return dict(run, x=ed.sampling.randn(tuple(run["x"].shape), seed=99) * run["sigmas"][0].float())


def hook_state(den):
    return [(type(m).__name__, "forward" in m.__dict__, hasattr(m, "_effdiff_hooks"), tuple(hooks_of(m)))
            for m in den.modules()]


def clean(den) -> bool:
    return all("forward" not in m.__dict__ and not hooks_of(m) for m in den.modules())


def saved(h, den) -> int:
    """Evaluations the technique saved: reused cache entries, or skipped block calls."""
    s = h.stats
    if isinstance(s, CacheStats):
        return s.reused
    return s.skipped + s.evaluations * len(dit_blocks(den)) - s.layers


def worked(h) -> int:
    s = h.stats
    return s.computed + getattr(s, "layers", 0)


# ---- (a) a configuration that computes everything is exact ---------------------------------------

@pytest.mark.parametrize("name,zoo", MATRIX, ids=IDS)
def test_exact_config_is_bit_identical(name, zoo):
    den = model(zoo)
    run = run_of(den)
    ref = sample(run)
    with apply(name, zoo, "exact") as h:
        out = sample(run, h)
    assert saved(h, den) == 0 and worked(h) > 0
    assert torch.equal(out, ref)


# ---- (b) removing the handle restores the exact original model ---------------------------------

@pytest.mark.parametrize("name,zoo", MATRIX, ids=IDS)
def test_remove_restores_original(name, zoo):
    den = model(zoo)
    run = run_of(den)
    before, ref = hook_state(den), sample(run)
    h = apply(name, zoo, "eager")
    sample(other_noise(run), h)
    cached = sample(run, h)
    assert saved(h, den) > 0 and not torch.equal(cached, ref)
    h.remove()
    assert hook_state(den) == before and clean(den)
    assert torch.equal(sample(run), ref)


# ---- (c) multi-stage, SDE and guided sampling ---------------------------------------------------

class StageSpy(ModelHook):
    def __init__(self):
        self.seen = set()

    def __call__(self, module, call_next, *args, **kwargs):
        ctx = current_context()
        if ctx is not None:
            self.seen.add((ctx.stage, ctx.branch))
        return call_next(*args, **kwargs)


@pytest.mark.parametrize("solver,guided", [("heun", False), ("ddpm", False), ("ddim", True)],
                         ids=["heun", "ddpm", "cfg"])
@pytest.mark.parametrize("name,zoo", MATRIX, ids=IDS)
def test_runs_under_solvers_and_guidance(name, zoo, solver, guided):
    den = model(zoo)
    run = run_of(den, solver, guided=guided)
    spy, first = StageSpy(), den.net.modules().__next__()
    add_hook(first, spy, "stage-spy")
    try:
        with apply(name, zoo, "eager") as h:
            sample(other_noise(run), h)
            out = sample(run, h)
    finally:
        remove_hook(first, "stage-spy")
    assert torch.isfinite(out).all() and out.shape == run["x"].shape
    assert saved(h, den) > 0, h.stats
    if solver == "heun":
        assert (1, "cond") in spy.seen
    if guided:
        assert "cfg" in {b for _, b in spy.seen}


# ---- (d) nothing carries over from one generation to the next -----------------------------------

@pytest.mark.parametrize("name,zoo", MATRIX, ids=IDS)
def test_no_state_across_generations(name, zoo):
    den = model(zoo)
    run_a, run_b = run_of(den, batch=B, seed=0), run_of(den, batch=3, seed=5)
    with apply(name, zoo, "eager") as h:
        sample(other_noise(run_a), h)
        sample(run_a, h)
        out_b = sample(run_b, h)
    fresh = ed.zoo.load(zoo)
    run_b["denoiser"] = fresh
    with apply(name, zoo, "eager", fresh) as h2:
        ref_b = sample(run_b, h2)
    assert saved(h, den) > 0
    assert torch.equal(out_b, ref_b)


# ---- (f) memory reporting: held during a generation, released after it ------------------------------

@pytest.mark.parametrize("name,zoo", MATRIX, ids=IDS)
def test_store_bytes(name, zoo):
    den = model(zoo)
    h = apply(name, zoo, "eager")
    if h.store is None:          # nothing stored per generation (early exit, request-level caches)
        h.remove()
        pytest.skip(f"{name} keeps no feature store")
    run, during = run_of(den), []
    ed.sample(den, run["x"], run["sigmas"], solver="ddim", cond=run["cond"],
              callback=lambda info: during.append(h.store.nbytes()))
    gc.collect()
    assert min(during) > 0 and h.store.peak_bytes >= max(during) and h.stats.peak_bytes == h.store.peak_bytes
    assert h.store.nbytes() == 0                 # the generation is over: its features are gone
    h.remove()
    assert h.store.nbytes() == 0


# ---- concurrency (issue 9): two threads, one model, one cache --------------------------------------

@pytest.mark.parametrize("name,zoo", [("deepcache", "digits-unet"), ("adaptive", "digits-unet"),
                                      ("fora", "digits-dit"), ("delta-dit", "digits-dit")])
def test_two_threads_get_their_own_samples_and_speed_up(name, zoo):
    den = model(zoo)
    runs = [run_of(den, batch=4, seed=0), run_of(den, batch=3, seed=5)]
    alone, counts = [], []
    for r in runs:
        with apply(name, zoo, "eager") as h:
            alone.append(sample(r))
        counts.append((h.stats.computed, h.stats.reused))
    assert all(reused > 0 for _, reused in counts)
    rounds, barrier, outs, errors = 4, threading.Barrier(2), [[], []], []

    def worker(k):
        try:
            barrier.wait()
            for _ in range(rounds):
                outs[k].append(sample(runs[k]))
        except BaseException as e:       # pragma: no cover - reported below
            errors.append(e)

    with apply(name, zoo, "eager") as h:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    for k in range(2):
        assert all(torch.equal(o, alone[k]) for o in outs[k])
    assert (h.stats.computed, h.stats.reused) == tuple(rounds * (a + b) for a, b in zip(*counts))


# ---- issue 9: a failed apply leaves nothing attached ---------------------------------------------------

@pytest.mark.parametrize("first,second,zoo", [
    (lambda d: apply_deepcache(d, DeepCacheConfig(3, branch=1)), lambda d: apply_deepcache(d, DeepCacheConfig(3)),
     "digits-unet"),
    (lambda d: apply_fora(d, FORAConfig(2, blocks=(0, 1))), lambda d: apply_fora(d, FORAConfig(2)), "digits-dit")],
    ids=["deepcache", "fora"])
def test_failed_apply_attaches_nothing(first, second, zoo):
    den = ed.zoo.load(zoo)
    run = run_of(den)
    ref, before = sample(run), hook_state(den)
    h = first(den)
    during = hook_state(den)
    with pytest.raises(ValueError, match="already attached"):
        second(den)
    assert hook_state(den) == during
    h.remove()
    assert hook_state(den) == before and clean(den)
    assert torch.equal(sample(run), ref)


def test_failed_composition_detaches_the_first_technique():
    den = ed.zoo.load("digits-unet")
    run = run_of(den)
    ref = sample(run)
    with pytest.raises(ValueError, match="already attached"):
        T.apply(["deepcache", "deepcache"], den)
    assert clean(den) and torch.equal(sample(run), ref)


# ---- (e) two methods on different sites compose; removing one keeps the other --------------------

def _compose(den, run, make_a, make_b):
    alone_a = _alone(den, run, make_a)
    alone_b = _alone(den, run, make_b)
    ha, hb = make_a(den), make_b(den)
    both = sample(run)
    assert ha.stats.reused > 0 and hb.stats.reused > 0
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
    assert h.stats.reused > 0
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
    assert (h.stats.reused, h.stats.computed) == (4, 12)


def test_adaptive_reuse_fraction_and_errors():
    den = model("digits-unet")
    with pytest.raises(ValueError, match="probe"):
        apply_adaptive_cache(den, AdaptiveCacheConfig(probe="modulated-input"))
    run = run_of(den)
    fractions = []
    for th in (0.05, 0.3, 10.0):
        with apply_adaptive_cache(den, AdaptiveCacheConfig(th)) as h:
            sample(run)
        fractions.append(h.stats.reuse_fraction)
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
