"""Learning-to-Cache (Ma et al. 2024): exact when the threshold computes every layer, the router
round-trips through safetensors + JSON, and a trained router beats an untrained choice of the
same number of reused layers."""
import pytest
import torch

import effdiff as ed
from effdiff.caching import L2CConfig, Router, apply_l2c, l2c_loss, train_l2c_router
from effdiff.checkpoint import CheckpointError
from effdiff.hooks import hooks_of

STEPS = 10


@pytest.fixture(scope="module")
def den():
    return ed.zoo.load("digits-dit")


@pytest.fixture(scope="module")
def router(den):
    return train_l2c_router(den, steps=STEPS, solver="ddim", num_samples=32, iters=120, seed=0)


def _run(den, n=32):
    sig = ed.timesteps.uniform_t(STEPS, den.process)
    x = ed.sampling.randn((n, 1, 8, 8), seed=5) * sig[0].float()
    return lambda: ed.sample(den, x, sig, solver="ddim", cond=torch.arange(n) % 10)


def test_threshold_computing_everything_is_exact(den, router):
    run = _run(den)
    ref = run()
    assert router.skip_fraction(0.0) == 0.0
    with apply_l2c(den, L2CConfig(router, threshold=0.0)) as h:
        out = run()
    assert torch.equal(out, ref) and h.stats.reused == 0
    assert all(not hooks_of(b) for b in den.net.blocks)


def test_router_reuses_where_beta_is_low(den, router):
    th = router.threshold_for(0.3)
    assert router.skip_fraction(th) == pytest.approx(0.3, abs=0.05)
    mask = router.compute_mask(th)
    assert mask[0::2].all()                            # full steps always compute
    with apply_l2c(den, L2CConfig(router, th)) as h:
        _run(den)()
    assert h.stats.reused == (~mask).sum().item()   # one call per (step, layer)


def test_router_round_trip(router, tmp_path):
    router.save(tmp_path / "r")
    back = Router.load(tmp_path / "r")
    assert torch.equal(back.logits, router.logits.float())
    assert (back.sites, back.solver, back.num_steps, back.granularity) == \
        (router.sites, router.solver, router.num_steps, router.granularity)
    assert torch.equal(back.compute_mask(0.5), router.compute_mask(0.5))
    ed.checkpoint.save(tmp_path / "bad", {"logits": torch.zeros(3, 2)}, {"format": "something-else"})
    with pytest.raises(CheckpointError, match="not a Learning-to-Cache router"):
        Router.load(tmp_path / "bad")


def test_wrong_step_count_and_model_are_refused(den, router):
    sig = ed.timesteps.uniform_t(STEPS + 2, den.process)
    with apply_l2c(den, L2CConfig(router, 0.5)), pytest.raises(ValueError, match="calibrated for"):
        ed.sample(den, sig[0].float() * torch.randn(2, 1, 8, 8), sig, solver="ddim")
    other = Router(torch.zeros(router.logits.shape[0], 3), ["a", "b", "c"], "ddim", STEPS)
    with pytest.raises(ValueError, match="trained for layers"):
        apply_l2c(den, L2CConfig(other))


def _untrained(router, seed):
    g = torch.Generator().manual_seed(seed)
    return Router(torch.randn(router.logits.shape, generator=g), router.sites, "ddim", STEPS)


def test_training_lowers_the_objective_at_the_same_sparsity(den, router):
    """The paper's matching loss (held-out trajectories; 1 = reuse everything at cache steps) of
    the thresholded router beats random choices of as many reused layers."""
    for frac in (0.1, 0.2, 0.3):
        learned = l2c_loss(den, router, router.threshold_for(frac))
        random = [l2c_loss(den, r, r.threshold_for(frac)) for r in (_untrained(router, k) for k in range(3))]
        assert learned < min(random), (frac, learned, random)
    assert l2c_loss(den, router) < l2c_loss(den, Router(torch.full_like(router.logits, 2.0), router.sites, "ddim",
                                                         STEPS))


def test_learned_reuse_keeps_samples_closer_than_random_reuse(den, router):
    run = _run(den)
    ref = run()

    def err(r, frac=0.1):
        with apply_l2c(den, L2CConfig(r, r.threshold_for(frac))) as h:
            out = run()
        assert h.stats.reused == round(frac * STEPS * 6)
        return (out - ref).pow(2).mean().item()

    assert err(router) < min(err(_untrained(router, k)) for k in range(3))


@pytest.mark.parametrize("solver", ["heun", "ddpm"])
def test_router_works_under_heun_and_sde_without_leaking_state(den, router, solver):
    """The router keys on the loop's step index, so a multi-evaluation (Heun) or stochastic (DDPM)
    solver over the same steps runs unchanged; a second generation equals a fresh one."""
    sig = ed.timesteps.uniform_t(STEPS, den.process)
    lab = torch.arange(8) % 10
    xa = ed.sampling.randn((8, 1, 8, 8), seed=1) * sig[0].float()
    xb = ed.sampling.randn((4, 1, 8, 8), seed=2) * sig[0].float()
    with apply_l2c(den, L2CConfig(router, threshold=0.5)) as h:
        ed.sample(den, xa, sig, solver=solver, cond=lab, seed=1)
        after_a = ed.sample(den, xb, sig, solver=solver, cond=lab[:4], seed=2)
        assert h.stats.reused > 0
    with apply_l2c(den, L2CConfig(router, threshold=0.5)):
        fresh = ed.sample(den, xb, sig, solver=solver, cond=lab[:4], seed=2)
    assert torch.equal(after_a, fresh)
