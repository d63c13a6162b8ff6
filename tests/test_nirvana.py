"""NIRVANA approximate caching across requests (Agarwal et al. 2024) on an exact Gaussian denoiser."""
import pytest
import torch

import effdiff as ed
from effdiff.caching import ApproximateCache, cached_sample

MEANS = torch.tensor([[-2.0, 1.0], [2.0, 0.5], [0.0, -3.0]])   # per-class Gaussian means, variance S2
S2 = 0.25


def gauss(x, sigma, cond=None):
    """Exact denoiser of N(mu_c, S2 I): E[x0 | x] = mu + S2 / (S2 + σ²) (x - mu)."""
    mu = MEANS[cond] if cond is not None else torch.zeros_like(x)
    s = sigma.reshape(-1, 1).to(x.dtype)
    return mu + S2 / (S2 + s ** 2) * (x - mu)


SIG = ed.timesteps.karras(10, sigma_min=0.02, sigma_max=20.0)
LAB = torch.tensor([0, 1, 2, 0])


def noise(seed=0):
    return ed.sampling.randn((4, 2), seed=seed) * SIG[0].float()


def test_miss_then_hit_equals_uncached_run():
    cache = ApproximateCache(1 << 20, k_choices=(2, 4, 6))
    ref = ed.sample(gauss, noise(), SIG, solver="euler", cond=LAB, return_info=True)
    r1 = cached_sample(gauss, cache, noise(), SIG, LAB, solver="euler", seed=0)
    assert not r1.info["hit"] and r1.nfe == 10 and torch.equal(r1.x, ref.x)
    r2 = cached_sample(gauss, cache, noise(), SIG, LAB, solver="euler", seed=0)
    assert r2.info["hit"] and r2.info["k"] == 6 and r2.info["similarity"] == 1.0
    assert r2.info["nfe_saved"] == 6 and r2.nfe == 10 - 6
    assert torch.equal(r2.x, ref.x)             # continuing the stored trajectory is the same run
    st = cache.stats()
    assert (st["requests"], st["hits"], st["misses"], st["hit_rate"]) == (2, 1, 1, 0.5)
    assert st["nfe_saved"] == 6 and st["nfe_spent"] == 14
    assert st["bytes_used"] == 3 * 4 * 2 * 4 and st["states"] == 3


def test_heun_hit_saves_its_nfe_and_matches():
    cache = ApproximateCache(1 << 20, k_choices=(3,))
    ref = ed.sample(gauss, noise(1), SIG, solver="heun", cond=LAB)
    cached_sample(gauss, cache, noise(1), SIG, LAB, solver="heun")
    r = cached_sample(gauss, cache, noise(1), SIG, LAB, solver="heun")
    assert r.info["k"] == 3 and r.info["nfe_saved"] == 6 and r.nfe == 19 - 6
    assert torch.allclose(r.x, ref, atol=0, rtol=0)


def test_key_is_condition_guidance_and_schedule():
    cache = ApproximateCache(1 << 20, k_choices=(2, 4))
    cached_sample(gauss, cache, noise(), SIG, LAB)
    assert not cached_sample(gauss, cache, noise(), SIG, torch.tensor([1, 1, 2, 0])).info["hit"]
    assert not cached_sample(gauss, cache, noise(), SIG, LAB, guidance=2.0).info["hit"]
    other = ed.timesteps.karras(10, sigma_min=0.02, sigma_max=10.0)
    assert not cached_sample(gauss, cache, noise() / 2, other, LAB).info["hit"]
    assert cached_sample(gauss, cache, noise(5), SIG, LAB).info["hit"]     # noise is not part of the key


def test_embedding_similarity_picks_k():
    cache = ApproximateCache(1 << 20, k_choices=(2, 4, 6), thresholds=(0.7, 0.9, 0.99))
    e = torch.tensor([1.0, 0.0, 0.0])
    cached_sample(gauss, cache, noise(), SIG, LAB, embedding=e)
    near = torch.tensor([0.95, 0.3122499, 0.0])        # cosine 0.95 -> K = 4
    r = cached_sample(gauss, cache, noise(), SIG, torch.tensor([1, 1, 1, 1]), embedding=near)
    assert r.info["hit"] and r.info["k"] == 4 and abs(r.info["similarity"] - 0.95) < 1e-4
    # the tail is reconditioned on the new request's labels: it lands near class 1's mean
    assert (r.x - MEANS[1]).norm(dim=1).max() < (r.x - MEANS[0]).norm(dim=1).min()
    assert cached_sample(gauss, cache, noise(), SIG, LAB, embedding=e).info["k"] == 6
    far = torch.tensor([0.5, 0.8660254, 0.0])          # cosine 0.5 < 0.7: a miss
    assert not cached_sample(gauss, cache, noise(), SIG, LAB, embedding=far).info["hit"]


def test_lcbfu_evicts_lowest_frequency_times_k():
    state = 4 * 2 * 4                                  # bytes of one stored state
    cache = ApproximateCache(3 * state, k_choices=(2, 4), thresholds=(0.5, 0.9))
    a, b, c = LAB, torch.tensor([1, 1, 1, 1]), torch.tensor([2, 2, 2, 2])
    cached_sample(gauss, cache, noise(), SIG, a)       # A: K2 (score 1*2), K4 (1*4)
    assert cached_sample(gauss, cache, noise(), SIG, a).info["k"] == 4   # A.K4 used again: 2*4 = 8
    r = cached_sample(gauss, cache, noise(), SIG, b)   # B needs 2 slots, 1 free: evict A.K2 (2)
    assert r.info["evicted"] == 1
    assert {tuple(e.states) for e in cache.entries} == {(4,), (2, 4)}
    r = cached_sample(gauss, cache, noise(), SIG, c)   # evict B.K2 (2), then B.K4 (4); A.K4 (8) stays
    assert r.info["evicted"] == 2 and len(cache.entries) == 2
    assert cached_sample(gauss, cache, noise(), SIG, a).info["k"] == 4
    assert not cached_sample(gauss, cache, noise(), SIG, b).info["hit"]
    st = cache.stats()
    assert st["bytes_used"] <= 3 * state and st["evictions"] >= 3


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="threshold"):
        ApproximateCache(1 << 20, k_choices=(2, 4), thresholds=(0.9,))
    with pytest.raises(ValueError, match="k_choices"):
        ApproximateCache(1 << 20, k_choices=(4, 2), thresholds=(0.5, 0.9))


def test_hit_runs_the_true_step_indices():
    """On a hit the tail runs on the full schedule from K: the denoiser sees steps K..n-1."""
    from effdiff.context import current_context
    seen = []

    def spy(x, sigma, cond=None):
        seen.append((current_context().step, current_context().num_steps))
        return gauss(x, sigma, cond)

    cache = ApproximateCache(1 << 20, k_choices=(4,))
    cached_sample(spy, cache, noise(), SIG, LAB)
    assert seen == [(i, 10) for i in range(10)]
    seen.clear()
    r = cached_sample(spy, cache, noise(), SIG, LAB)
    assert r.info["hit"] and seen == [(i, 10) for i in range(4, 10)]


def test_registered_technique_serves_requests_through_its_handle():
    from effdiff import techniques as T
    ref = ed.sample(gauss, noise(), SIG, solver="euler", cond=LAB)
    with T.get("nirvana").apply(gauss, k_choices=(4,)) as h:
        first = h.sample(gauss, noise(), SIG, "euler", LAB)
        second = h.sample(gauss, noise(), SIG, "euler", LAB, return_info=True)
    assert torch.equal(first, ref) and torch.equal(second.x, ref)
    assert (h.stats.computed, h.stats.reused) == (10 + 6, 4) and h.stats.peak_bytes == 4 * 2 * 4
