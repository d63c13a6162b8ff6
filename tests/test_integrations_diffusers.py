"""diffusers integration: denoiser wrapper, scheduler conversion, DeepCache / FORA hooks on
tiny randomly initialised diffusers models (no downloads), side by side with upstream DeepCache."""
import time
from types import SimpleNamespace

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

import effdiff as ed  # noqa: E402
from effdiff.caching import DeepCacheConfig, FORAConfig, apply_deepcache, apply_fora  # noqa: E402
from effdiff.hooks import hooks_of  # noqa: E402
from effdiff.integrations.diffusers import DiffusersDenoiser, process_from_scheduler  # noqa: E402


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        cross_attention_dim=32, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=8, attention_head_dim=8).eval()


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    return diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4, num_layers=2,
                                           sample_size=8, patch_size=2, norm_num_groups=8,
                                           num_embeds_ada_norm=10).eval()


def _inputs(den, n=12, batch=1):
    sig = ed.timesteps.uniform_t(n, den.process)
    x = ed.sampling.randn((batch, 4, 8, 8), seed=0) * sig[0].float()
    c = torch.randn(batch, 5, 32, generator=torch.Generator().manual_seed(1))
    return sig, x, c


def _pristine(model):
    return all("forward" not in m.__dict__ and not hooks_of(m) for m in model.modules())


def test_scheduler_configs_become_processes():
    for kind in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        sch = diffusers.DDPMScheduler(beta_schedule=kind, beta_start=0.00085, beta_end=0.012)
        proc, pred = process_from_scheduler(sch)
        assert pred == "eps" and proc.num_steps == 1000
        assert torch.allclose(proc.betas, sch.betas.double(), rtol=1e-6, atol=0)   # diffusers: float32
    assert process_from_scheduler({"prediction_type": "v_prediction"})[1] == "v"
    proc, pred = process_from_scheduler(diffusers.FlowMatchEulerDiscreteScheduler())
    assert isinstance(proc, ed.process.Flow) and pred == "velocity"
    with pytest.raises(ValueError, match="zero_snr"):
        process_from_scheduler({"rescale_betas_zero_snr": True})


def test_denoiser_matches_a_diffusers_ddim_loop(unet):
    """effdiff's euler (= DDIM, eta 0) on the wrapper equals diffusers' own DDIMScheduler loop."""
    sch = diffusers.DDIMScheduler(set_alpha_to_one=True, clip_sample=False)
    den = DiffusersDenoiser(unet, sch)
    sch.set_timesteps(8)
    sig = ed.timesteps.leading(8, den.process)
    _, x, c = _inputs(den)
    x = x / x.std() * sig[0].float()
    ours = ed.sample(den, x, sig, solver="euler", cond=c)
    lat = x / (1 + sig[0] ** 2).sqrt().float()              # VP-form x_T = alpha x
    with torch.no_grad():
        for t in sch.timesteps:
            lat = sch.step(unet(lat, t, encoder_hidden_states=c).sample, t, lat).prev_sample
    assert torch.allclose(ours, lat, rtol=1e-4, atol=1e-4 * lat.abs().max())


def test_deepcache_dispatches_to_the_diffusers_unet(unet):
    den = DiffusersDenoiser(unet, diffusers.DDPMScheduler())
    sig, x, c = _inputs(den)
    ref = ed.sample(den, x, sig, solver="euler", cond=c)
    with apply_deepcache(den, DeepCacheConfig(interval=1)):
        assert torch.equal(ed.sample(den, x, sig, solver="euler", cond=c), ref)
    h = apply_deepcache(den, DeepCacheConfig(interval=3))
    assert sorted(m is unet.mid_block for m, _ in h.attached) == [False, False, True]
    out = ed.sample(den, x, sig, solver="euler", cond=c)
    assert (h.stats.computed, h.stats.reused) == (4 * 3, 8 * 3)       # full steps 0, 3, 6, 9 of 12; 3 sites
    assert 0 < (out - ref).norm() / ref.norm() < 0.5
    h.remove()
    assert _pristine(unet) and torch.equal(ed.sample(den, x, sig, solver="euler", cond=c), ref)
    with pytest.raises(ValueError, match="branch"):
        apply_deepcache(den, DeepCacheConfig(branch=1))


def test_fora_on_a_diffusers_dit(dit):
    den = DiffusersDenoiser(dit, diffusers.DDPMScheduler())
    assert den.cond_kw == "class_labels" and den.null_class == 10
    sig, x, _ = _inputs(den, batch=2)
    lab = torch.tensor([3, 7])
    ref = ed.sample(den, x, sig, solver="euler", cond=lab)
    with apply_fora(den, FORAConfig(interval=1)):
        assert torch.equal(ed.sample(den, x, sig, solver="euler", cond=lab), ref)
    h = apply_fora(den, FORAConfig(interval=3))
    assert {type(m).__name__ for m, _ in h.attached} == {"Attention", "FeedForward"} and len(h.attached) == 4
    out = ed.sample(den, x, sig, solver="euler", cond=lab)
    assert (h.stats.computed, h.stats.reused) == (4 * 4, 8 * 4)
    assert 0 < (out - ref).norm() / ref.norm() < 0.5
    h.remove()
    assert _pristine(dit)
    g = ed.sample(ed.guided(den, 2.0), x, sig, solver="euler", cond=lab)   # CFG through the null label
    assert g.shape == x.shape and torch.isfinite(g).all()


def _median_time(fn, reps=3):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[reps // 2], out


def test_side_by_side_with_upstream_deepcache(unet, record_property):
    """Upstream ``DeepCache`` (pip ``DeepCache``, its diffusers-agnostic ``DeepCacheSDHelper``)
    on the same UNet: its cache_branch_id=1 equals our branch 0 exactly; branch 0 caches finer.
    Speed-ups are recorded, not asserted (timed tests are flaky; ``effdiff bench`` measures)."""
    dc = pytest.importorskip("DeepCache", reason="upstream DeepCache not installed (pip install --no-deps DeepCache)")
    den = DiffusersDenoiser(unet, diffusers.DDPMScheduler())
    sig, x, c = _inputs(den, n=12)   # batch 1: the helper reads the step from timestep.item()
    run = lambda: ed.sample(den, x, sig, solver="euler", cond=c)  # noqa: E731
    t_ref, ref = _median_time(run)
    with apply_deepcache(den, DeepCacheConfig(interval=3)):
        t_ours, ours = _median_time(run)
    # the helper finds the step by looking the UNet's timestep up in pipe.scheduler.timesteps
    ts = den.process.c_noise(den.process.sigma_to_t(sig[:-1].float().double())).float()
    pipe = SimpleNamespace(unet=unet, scheduler=SimpleNamespace(timesteps=ts))
    res = {}
    for branch in (1, 0):
        helper = dc.DeepCacheSDHelper(pipe=pipe)
        helper.set_params(cache_interval=3, cache_branch_id=branch)
        helper.enable()
        try:
            res[branch] = _median_time(run)
        finally:
            helper.disable()
            for m in unet.modules():     # disable() leaves instance-level forward attributes behind
                m.__dict__.pop("forward", None)
    assert torch.equal(res[1][1], ours)
    err = {name: float((o - ref).norm() / ref.norm()) for name, o in
           (("ours_b0", ours), ("upstream_b1", res[1][1]), ("upstream_b0", res[0][1]))}
    assert 0 < err["ours_b0"] <= err["upstream_b0"] < 1
    speed = {"ours_b0": t_ref / t_ours, "upstream_b1": t_ref / res[1][0], "upstream_b0": t_ref / res[0][0]}
    record_property("deepcache_rel_err", err)
    record_property("deepcache_speedup", speed)
    print("rel. error vs uncached:", err, "speed-up:", speed)
