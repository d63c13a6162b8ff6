"""Guidance interval, adaptive guidance and the CFG cache: exact settings equal ed.CFG bit for bit,
eager ones act, evaluations are counted honestly (a step with one evaluation counts one)."""
import math

import pytest
import torch

import effdiff as ed
from effdiff import techniques as T
from effdiff.denoisers import CFG
from effdiff.guidance.count import Evaluations
from effdiff.guidance.interval import IntervalConfig
from effdiff.guidance.adaptive import AdaptiveGuidanceConfig
from effdiff.guidance.cfg_cache import CFGCacheConfig
from effdiff.sampling import randn

NAMES = ("guidance-interval", "guidance-adaptive", "cfg-cache")
N = 8


@pytest.fixture(scope="module")
def den():
    return ed.zoo.load("digits-dit")


def run(den, tech=None, config=None, solver="euler", scale=2.0, n=N, batch=6, seed=0):
    sig = ed.timesteps.get("uniform", n, den.process)
    labels = torch.arange(batch) % 10
    x = randn((batch, 1, 8, 8), seed=seed) * sig[0].float()
    D = CFG(den, scale)
    with Evaluations(den) as ev:
        if tech is None:
            res = ed.sample(D, x, sig, solver, labels, seed=seed, return_info=True)
        else:
            with T.get(tech).apply(den, config) as h:
                res = ed.sample(D, x, sig, solver, labels, seed=seed, return_info=True)
            res.stats["guidance"] = h.stats.as_dict()
    return res, ev.per_sample(batch)


def test_registered_in_the_guidance_family(den):
    assert set(NAMES) <= set(T.names("guidance"))
    assert {t.name for t in T.applicable(den, "guidance")} >= set(NAMES)
    assert T.get("cfg-cache").why_not(lambda x, s, c=None: x) is not None


@pytest.mark.parametrize("solver", ["euler", "heun", "dpmpp-2m", "ddim", "dpmpp-2m-sde", "deis-3"])
@pytest.mark.parametrize("name", NAMES)
def test_exact_setting_is_cfg_bit_for_bit(den, name, solver):
    ref, ev_ref = run(den, solver=solver)
    got, ev = run(den, name, T.get(name).exact(N), solver=solver)
    assert torch.equal(got.x, ref.x)
    assert ev == ev_ref == 2 * ref.nfe              # CFG: two network evaluations per denoiser call


@pytest.mark.parametrize("name", NAMES)
def test_eager_setting_acts_and_saves_evaluations(den, name):
    ref, ev_ref = run(den)
    got, ev = run(den, name, T.get(name).eager(N))
    assert not torch.equal(got.x, ref.x)
    assert got.nfe == ref.nfe == N                 # the driver counts calls either way
    assert ev < ev_ref
    assert got.stats["guidance"]["evaluation_saving"] == pytest.approx(1 - ev / ev_ref)


def test_interval_outside_is_the_conditional_model_exactly(den):
    sig = ed.timesteps.get("uniform", N, den.process)
    labels = torch.arange(6) % 10
    x = randn((6, 1, 8, 8), seed=0) * sig[0].float()
    cond_only = ed.sample(den, x, sig, "euler", labels)
    got, ev = run(den, "guidance-interval", IntervalConfig(math.inf, math.inf))
    assert torch.equal(got.x, cond_only) and ev == N      # one evaluation per step


def test_interval_counts_guided_steps_twice(den):
    sig = ed.timesteps.get("uniform", N, den.process).tolist()
    lo, hi = sig[5], sig[2]                         # steps 2, 3, 4, 5 are guided
    got, ev = run(den, "guidance-interval", IntervalConfig(lo, hi))
    assert ev == N + 4
    assert got.stats["guidance"]["uncond_rows"] == 4 * 6 and got.stats["guidance"]["skipped_rows"] == (N - 4) * 6


def test_adaptive_eager_guides_the_first_step_only(den):
    got, ev = run(den, "guidance-adaptive", AdaptiveGuidanceConfig(threshold=-2.0))
    assert ev == N + 1


def test_cfg_cache_refresh_schedule(den):
    # steps 0, 1 full; then refresh at 2, 5 (interval 3); the rest reuse: 3 + 5 skipped ... 4 guided steps
    got, ev = run(den, "cfg-cache", CFGCacheConfig(interval=3, first_steps=2))
    assert ev == N + 4


def test_cfg_cache_reuse_is_close_to_cfg(den):
    ref, _ = run(den)
    got, _ = run(den, "cfg-cache", CFGCacheConfig(interval=2, first_steps=2))
    cond, _ = run(den, scale=1.0)
    assert (got.x - ref.x).abs().mean() < 0.5 * (cond.x - ref.x).abs().mean()


@pytest.mark.parametrize("name,config", [("guidance-adaptive", AdaptiveGuidanceConfig(threshold=0.9)),
                                         ("cfg-cache", CFGCacheConfig(interval=2, first_steps=1))])
def test_same_sample_whatever_the_batch(den, name, config):
    big, _ = run(den, name, config, batch=6)
    small, _ = run(den, name, config, batch=2)
    assert torch.allclose(big.x[:2], small.x, atol=1e-4)


def test_composes_with_deepcache():
    unet = ed.zoo.load("digits-unet")
    sig = ed.timesteps.get("uniform", N, unet.process)
    labels = torch.arange(4) % 10
    x = randn((4, 1, 8, 8), seed=0) * sig[0].float()
    ref = ed.sample(CFG(unet, 2.0), x, sig, "ddim", labels)
    with T.apply(["deepcache", "cfg-cache"], unet, {"deepcache": T.get("deepcache").exact(N),
                                                   "cfg-cache": T.get("cfg-cache").exact(N)}):
        exact = ed.sample(CFG(unet, 2.0), x, sig, "ddim", labels)
    assert torch.equal(exact, ref)
    with T.apply(["deepcache", "guidance-interval"], unet, {"deepcache": T.get("deepcache").eager(N),
                                                           "guidance-interval": IntervalConfig(1.0, math.inf)}) as h:
        out = ed.sample(CFG(unet, 2.0), x, sig, "ddim", labels)
    assert torch.isfinite(out).all() and h.stats["guidance-interval"].skipped_rows > 0


def test_no_guidance_no_effect(den):
    ref, ev_ref = run(den, scale=1.0)
    got, ev = run(den, "cfg-cache", CFGCacheConfig(interval=4), scale=1.0)
    assert torch.equal(got.x, ref.x) and ev == ev_ref == N


def test_two_guidance_techniques_compose(den):
    ref, ev_ref = run(den)
    sig = ed.timesteps.get("uniform", N, den.process).tolist()
    labels = torch.arange(6) % 10
    x = randn((6, 1, 8, 8), seed=0) * torch.tensor(sig[0]).float()
    configs = {"guidance-interval": IntervalConfig(sig[5], sig[0]), "guidance-adaptive": AdaptiveGuidanceConfig(0.9)}
    with Evaluations(den) as ev, T.apply(["guidance-interval", "guidance-adaptive"], den, configs):
        out = ed.sample(CFG(den, 2.0), x, torch.tensor(sig), "euler", labels)
    assert torch.isfinite(out).all() and N < ev.per_sample(6) <= N + 6


def test_cfg_cache_frequency_split():
    from effdiff.guidance.cfg_cache import freq_split
    d = randn((3, 2, 8, 8), seed=5)
    low, high = freq_split(d)
    assert torch.allclose(low + high, d, atol=1e-6)
    assert 0 < low.abs().mean() < d.abs().mean() and 0 < high.abs().mean()
    flat = torch.full((1, 1, 8, 8), 0.7)                          # no variation: all in the low band
    assert torch.allclose(freq_split(flat)[0], flat, atol=1e-6) and freq_split(flat)[1].abs().max() < 1e-6
    with pytest.raises(ValueError):
        CFGCacheConfig(boost=-1.0)


def test_cfg_cache_boost_changes_only_reused_steps(den):
    plain, ev0 = run(den, "cfg-cache", CFGCacheConfig(interval=3, first_steps=2))
    boosted, ev1 = run(den, "cfg-cache", CFGCacheConfig(interval=3, first_steps=2, boost=0.5))
    assert ev1 == ev0 == N + 4                                     # same evaluations: reweighting is free
    assert not torch.equal(plain.x, boosted.x)
    full, _ = run(den, "cfg-cache", CFGCacheConfig(interval=1, boost=0.5))  # nothing reused: exactly ed.CFG
    ref, _ = run(den)
    assert torch.equal(full.x, ref.x)
