"""Training tricks (issue 12): min-SNR-γ per target, sliced score matching, minibatch OT and
immiscible couplings, EMA variants, PriorGrad and REPA — each checked against its paper's math,
and each trained a few steps with an exact resume."""
import math

import pytest
import torch

import effdiff as ed
from effdiff import checkpoint
from effdiff.denoisers import Denoiser
from effdiff.objectives import DiffusionLoss, LossConfig, weight, x0_jacobian
from effdiff.process import VE, VP, Flow
from effdiff.training import Trainer, preset
from effdiff.training import ema as ema_mod
from effdiff.training import priorgrad
from effdiff.training.coupling import assignment, cost_matrix, couple

torch.set_num_threads(1)

TINY = dict(data="digits", arch="unet", steps=4, batch_size=16, ckpt_every=2, warmup=2,
            model={"model_channels": 8, "channel_mult": (1, 2), "num_res_blocks": 1, "attention_resolutions": (),
                   "num_classes": 10})
SCORE = dict(prediction="score", process={"name": "vp", "schedule": "linear", "discrete": False})
OPTIONS = {
    "min-snr": dict(loss={"weighting": "min-snr", "gamma": 5.0}),
    "ssm": dict(SCORE, loss={"kind": "ssm"}),
    "ot": dict(coupling="ot"),
    "immiscible": dict(coupling="immiscible"),
    "ema-power": dict(ema={"kind": "power", "sigma_rel": 0.05}),
    "priorgrad": dict(prior="priorgrad"),
    "repa": dict(repa={"encoder": "digits-classifier", "weight": 0.5, "layer": 2}),
}


class Ident(torch.nn.Module):
    """A network that returns its input."""

    def forward(self, x, t, y=None):
        return x


# ---- min-SNR-γ: the paper's per-target forms -----------------------------------------------

@pytest.mark.parametrize("prediction,process", [("x0", VP(discrete=False)), ("eps", VP(discrete=False)),
                                                ("v", VP("cosine", discrete=False)), ("velocity", Flow()),
                                                ("score", VP(discrete=False))])
@pytest.mark.parametrize("gamma", [5.0, 1.0])
def test_min_snr_weight_is_the_papers_per_target_formula(prediction, process, gamma):
    den = Denoiser(torch.nn.Identity(), process, prediction)
    sigma = torch.tensor([0.05, 0.3, 1.0, 2.5, 20.0], dtype=torch.float64)
    t, a, b, da, db = den.coefficients(sigma)
    snr = a ** 2 / b ** 2
    m = snr.clamp(max=gamma)
    expected = {"x0": m, "eps": m / snr, "v": m / (snr + 1),          # Hang et al. 2023, Sec. 3.4
                "velocity": m * t ** 2,                               # x0 = x_t - t v: J = t
                "score": m / snr * b ** 2}[prediction]                # eps = -b s: eps-form times b²
    got = weight("min-snr", sigma, x0_jacobian(prediction, sigma, a, b, da, db), gamma=gamma)
    assert torch.allclose(got, expected, rtol=1e-10)


def test_min_snr_gamma_reaches_the_loss():
    den = Denoiser(Ident(), VE(), "x0")      # output = input: error = σ ε, known
    x0 = torch.zeros(3, 4, dtype=torch.float64)
    sigma = torch.tensor([0.1, 1.0, 3.0], dtype=torch.float64)
    eps = torch.ones(3, 4, dtype=torch.float64)
    for gamma in (5.0, 2.0):
        loss = DiffusionLoss(LossConfig(weighting="min-snr", gamma=gamma))(den, x0, sigma=sigma, eps=eps)
        assert torch.allclose(loss, (1 / sigma ** 2).clamp(max=gamma) * sigma ** 2)
    with pytest.raises(ValueError, match="gamma"):
        DiffusionLoss(LossConfig(weighting="min-snr", gamma=-1.0))


# ---- sliced score matching ------------------------------------------------------------------

class Linear(torch.nn.Module):
    """s(x) = A x + c, a linear score model (exact for Gaussian data)."""

    def __init__(self, d):
        super().__init__()
        self.A = torch.nn.Parameter(torch.zeros(d, d, dtype=torch.float64))
        self.c = torch.nn.Parameter(torch.zeros(d, dtype=torch.float64))

    def forward(self, x, t, y=None):
        return x @ self.A.T + self.c


@pytest.mark.parametrize("kind", ["dsm", "ssm"])
def test_ssm_and_dsm_recover_the_gaussian_score(kind):
    """At a fixed σ both losses fit the true score of N(μ, diag(s²) + σ²I): -(x - μ) / (s² + σ²)."""
    g = torch.Generator().manual_seed(0)
    mu, s, sig = torch.tensor([1.0, -0.5], dtype=torch.float64), torch.tensor([0.5, 1.5], dtype=torch.float64), 0.8
    x0 = mu + s * torch.randn(4096, 2, generator=g, dtype=torch.float64)
    net = Linear(2)
    den = Denoiser(net, VE(), "score")
    loss = DiffusionLoss(LossConfig(kind=kind))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    sigma = torch.full((4096,), sig, dtype=torch.float64)
    for i in range(300):
        for grp in opt.param_groups:
            grp["lr"] = 0.05 * (0.02 ** (i / 300))
        eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
        proj = loss.draw_projections(x0, g)
        opt.zero_grad()
        loss(den, x0, sigma=sigma, eps=eps, proj=proj).mean().backward()
        opt.step()
    var = s ** 2 + sig ** 2
    assert torch.allclose(net.A.detach(), torch.diag(-1 / var), atol=0.04)
    assert torch.allclose(net.c.detach(), mu / var, atol=0.04)


def test_ssm_equals_dsm_up_to_a_constant_in_expectation():
    """E[SSM] - E[DSM] does not depend on the model: it is the same for two different models."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(20000, 2, generator=g, dtype=torch.float64) * 0.7
    sigma = torch.full((20000,), 0.5, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    diffs = []
    for A in (torch.tensor([[-1.0, 0.2], [0.0, -2.0]]), torch.tensor([[0.5, 0.0], [0.3, -0.1]])):
        net = Linear(2)
        with torch.no_grad():
            net.A.copy_(A)
        den = Denoiser(net, VE(), "score")
        ssm = DiffusionLoss(LossConfig(kind="ssm", n_projections=4))
        proj = ssm.draw_projections(x0, g)
        diffs.append(float(ssm(den, x0, sigma=sigma, eps=eps, proj=proj).mean()
                           - DiffusionLoss()(den, x0, sigma=sigma, eps=eps).mean()))
    assert abs(diffs[0] - diffs[1]) < 0.05 * abs(diffs[0])


def test_ssm_needs_a_score_model():
    with pytest.raises(ValueError, match="score"):
        preset("toy2d", loss={"kind": "ssm"}).validate()      # toy2d predicts eps
    with pytest.raises(ValueError, match="loss kind 'sm'"):
        DiffusionLoss(LossConfig(kind="sm"))


# ---- couplings --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["ot", "immiscible"])
def test_coupling_is_a_permutation_that_keeps_the_noise_and_lowers_the_cost(kind):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=g) * 2 - 1
    eps = torch.randn(64, 1, 8, 8, generator=g)
    perm = assignment(x, eps, kind)
    assert sorted(perm.tolist()) == list(range(64))                         # a permutation
    coupled = couple(x, eps, kind)
    assert torch.equal(coupled, eps[perm])
    key = lambda t: sorted(map(tuple, t.reshape(64, -1).tolist()))
    assert key(coupled) == key(eps)                                          # same multiset of noise vectors
    c = cost_matrix(x, eps, kind)
    paired = c[torch.arange(64), perm].mean()
    random_pairing = c.diagonal().mean()                                     # eps is iid: the identity is random
    assert paired < 0.97 * random_pairing
    assert paired <= c[torch.arange(64), torch.randperm(64, generator=g)].mean()
    # no effect at batch 1, and "none" is the identity
    assert torch.equal(couple(x[:1], eps[:1], kind), eps[:1])
    assert torch.equal(couple(x, eps, "none"), eps)


def test_ot_mean_pair_cost_decreases_versus_random_pairing_at_every_batch_size():
    g = torch.Generator().manual_seed(2)
    for n in (2, 16, 128):
        x, eps = torch.randn(n, 16, generator=g) * 0.5 + 1, torch.randn(n, 16, generator=g)
        c = cost_matrix(x, eps, "ot")
        assert c[torch.arange(n), assignment(x, eps, "ot")].mean() <= c.diagonal().mean()


def test_trainer_coupling_moves_noise_not_labels():
    cfg = preset("digits-unet", **TINY, coupling="immiscible")
    base = Trainer(preset("digits-unet", **TINY), "unused", progress=False)
    tr = Trainer(cfg, "unused", progress=False)
    x, y = base.batch()
    tr.batch()
    plain, coupled = base.draw(x, y), tr.draw(x, y)
    assert torch.equal(plain["y"], coupled["y"]) and torch.equal(plain["sigma"], coupled["sigma"])
    assert torch.equal(plain["x"], coupled["x"])
    perm = assignment(x, plain["eps"], "immiscible")
    assert torch.equal(coupled["eps"], plain["eps"][perm]) and not torch.equal(perm, torch.arange(16))
    assert tr.gen.get_state().equal(base.gen.get_state())     # the coupling draws nothing


# ---- EMA ----------------------------------------------------------------------------------------

def test_power_ema_profile():
    g = ema_mod.sigma_rel_to_gamma(0.05)
    assert g == pytest.approx(16.97, abs=0.01)                   # EDM2: σ_rel = 0.05 <-> γ = 16.97
    assert ema_mod.sigma_rel_to_gamma(0.10) == pytest.approx(6.94, abs=0.01)
    assert ema_mod.gamma_to_sigma_rel(g) == pytest.approx(0.05, rel=1e-9)
    beta = ema_mod.decay_fn({"kind": "power", "sigma_rel": 0.05}, 0.999)
    assert beta(0) == 0.0                                        # the first step copies the weights
    assert beta(99) == pytest.approx((1 - 1 / 100) ** (g + 1))
    # averaging the sequence θ_t = t with β_t gives the power-profile mean (γ+1)/(γ+2) · t
    avg = 0.0
    for step in range(2000):
        b = beta(step)
        avg = b * avg + (1 - b) * (step + 1)
    assert avg == pytest.approx((g + 1) / (g + 2) * 2000, rel=2e-3)


def test_constant_ema_is_the_old_rule_and_options_are_checked():
    old = lambda step, d: min(d, (1 + step) / (10 + step))
    beta = ema_mod.decay_fn({}, 0.999)
    assert all(beta(s) == old(s, 0.999) for s in range(0, 5000, 7))
    assert ema_mod.decay_fn({"kind": "constant", "decay": 0.9, "warmup": False}, 0.999)(0) == 0.9
    for bad in ({"kind": "karras"}, {"kind": "power", "sigma_rel": 0.0}, {"kind": "power", "sigma_rel": 0.05, "gamma": 7},
                {"kind": "constant", "decay": 1.0}, {"kind": "power", "decay": 0.9}):
        with pytest.raises(ValueError, match="ema"):
            preset("toy2d", ema=bad).validate()


# ---- PriorGrad ------------------------------------------------------------------------------------

def test_priorgrad_statistics_and_wrapper():
    x = torch.randn(200, 1, 2, 2)
    y = torch.arange(200) % 2
    x[y == 1] = x[y == 1] * 3 + 5
    mean, std = priorgrad.class_statistics(x, y, 2, min_std=0.01)
    assert mean.shape == std.shape == (3, 1, 2, 2)
    assert torch.allclose(mean[1], x[y == 1].mean(0)) and torch.allclose(std[0], x[y == 0].std(0), rtol=1e-5)
    assert torch.allclose(mean[2], x.mean(0))                     # the null row: all data
    inner = Denoiser(Ident(), VE(), "x0", num_classes=2)   # D_w(x) = x
    den = priorgrad.PriorGradDenoiser(inner, mean, std)
    xs = torch.randn(4, 1, 2, 2)
    c = torch.tensor([0, 1, 2, 1])
    assert torch.allclose(den(xs, torch.ones(4), c), xs, atol=1e-5)    # μ + s((x-μ)/s) = x
    assert torch.allclose(den.prior(xs, c), mean[c] + std[c] * xs)


def test_priorgrad_samples_through_the_normal_driver():
    """Gaussian classes: the whitened data is N(0, I), whose exact denoiser is x / (1 + σ²). The
    wrapper, started at prior(randn * σ_max), samples each class's mean and std with any ODE solver."""
    mean = torch.tensor([[[[2.0, -1.0]]], [[[-3.0, 0.5]]], [[[0.0, 0.0]]]])
    std = torch.tensor([[[[0.5, 2.0]]], [[[1.0, 0.2]]], [[[1.0, 1.0]]]])

    class Exact(torch.nn.Module):
        cond_classes, null_class = 2, 2

        def labels(self, cond, batch, device):
            return cond

        def forward(self, x, sigma, cond=None):
            s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
            return x / (1 + s ** 2)

    den = priorgrad.PriorGradDenoiser(Exact(), mean, std)
    sig = ed.timesteps.karras(40, sigma_min=0.002, sigma_max=80.0)
    n = 4000
    cond = torch.arange(n) % 2
    x_T = den.prior(ed.sampling.randn((n, 1, 1, 2), seed=0, dtype=torch.float64) * sig[0], cond)
    out = ed.sample(den, x_T, sig, solver="heun", cond=cond)
    for c in (0, 1):
        xc = out[cond == c]
        assert torch.allclose(xc.mean(0), mean[c].double(), atol=4 * float(std[c].max()) / math.sqrt(n / 2))
        assert torch.allclose(xc.std(0), std[c].double(), rtol=0.08)


def test_priorgrad_export_round_trip(tmp_path):
    cfg = preset("digits-unet", **TINY, prior="priorgrad")
    tr = Trainer(cfg, tmp_path, progress=False).run()
    stem = tr.export()
    tensors, meta = checkpoint.load(stem)
    assert meta["prior"]["kind"] == "priorgrad" and meta["card"]["training"] == {"prior": "priorgrad"}
    assert tensors["prior.mean"].shape == (11, 1, 8, 8) and bool((tensors["prior.std"] >= 0.1).all())
    assert (stem.with_suffix(".json")).exists() and not list(tmp_path.glob("*.pt"))
    den = priorgrad.from_meta(tensors, meta)
    x, sigma, c = torch.randn(3, 1, 8, 8), torch.tensor([0.5, 2.0, 10.0]), torch.tensor([1, 7, 10])
    with torch.no_grad():
        assert torch.allclose(tr.ema_denoiser()(x, sigma, c), den(x, sigma, c), atol=1e-5)
    assert torch.equal(priorgrad.start(den, x, c), den.prior(x, c))
    assert torch.equal(priorgrad.start(tr.denoiser, x, c), x)
    w = tr.whitening
    inner = Denoiser(tr.ema.eval(), tr.process, "eps", 10)
    with torch.no_grad():
        expected = w.color(inner(w.whiten(x, c), sigma, c), c)
        assert torch.allclose(den(x, sigma, c), expected, atol=1e-5)


# ---- REPA ------------------------------------------------------------------------------------------

def test_repa_refuses_evaluation_networks_and_bad_layers():
    for enc in ("digits-eval", "mnist-eval"):
        with pytest.raises(ValueError, match="evaluation network"):
            preset("digits-unet", **TINY, repa={"encoder": enc}).validate()
    with pytest.raises(ValueError, match="unknown repa option"):
        preset("digits-unet", **TINY, repa={"lambda": 0.5}).validate()
    with pytest.raises(ValueError, match="layer must be in"):
        Trainer(preset("digits-unet", **TINY, repa={"layer": 99}), "unused", progress=False)


def test_repa_head_is_trained_checkpointed_and_not_exported(tmp_path):
    cfg = preset("digits-unet", **TINY, repa={"encoder": "digits-classifier", "weight": 0.5, "layer": 2})
    tr = Trainer(cfg, tmp_path, progress=False)
    head = list(tr.repa.head.parameters())
    opt_params = [p for grp in tr.opt.param_groups for p in grp["params"]]
    assert all(any(p is q for q in opt_params) for p in head)
    before = [p.detach().clone() for p in head]
    tr.run()
    assert any(not torch.equal(a, b) for a, b in zip(before, head))     # the head learns
    t, _ = checkpoint.load(tmp_path / "checkpoint")
    assert any(k.startswith("repa.") for k in t)
    exported, meta = checkpoint.load(tr.export())
    assert not any(k.startswith("repa.") for k in exported)
    assert meta["card"]["training"]["repa"]["encoder"] == "digits-classifier"
    ed.zoo.from_checkpoint(tmp_path / "model")                        # a plain denoiser


# ---- every option: trains, resumes bit-identically; defaults unchanged --------------------------------

@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_option_trains_and_resumes_bit_identically(name, tmp_path):
    cfg = preset("digits-unet", **TINY, **OPTIONS[name])
    first = Trainer(cfg, tmp_path / "a", progress=False).run(stop_after=2)
    assert first.step == 2
    resumed = Trainer(cfg, tmp_path / "a", progress=False).run(resume=True)
    whole = Trainer(cfg, tmp_path / "b", progress=False).run()
    for part in ("net", "ema"):
        sa, sb = getattr(resumed, part).state_dict(), getattr(whole, part).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), f"{name}: {part} differs after resume"
    if name == "repa":
        assert all(torch.equal(a, b) for a, b in zip(resumed.repa.head.state_dict().values(),
                                                     whole.repa.head.state_dict().values()))
    b = whole.draw(*whole.batch())
    assert all(v.shape[0] == 16 for v in b.values() if torch.is_tensor(v))   # batch-first: rank-sliceable


def test_defaults_store_the_config_as_before():
    for name in ("digits-unet", "digits-dit", "toy2d"):
        d = preset(name).to_json()
        assert not {"coupling", "prior", "repa", "ema"} & set(d)
    assert preset("toy2d", coupling="ot").to_json()["coupling"] == "ot"


def test_unknown_trick_values_name_the_field():
    with pytest.raises(ValueError, match="unknown coupling 'sinkhorn'"):
        preset("toy2d", coupling="sinkhorn").validate()
    with pytest.raises(ValueError, match="unknown prior 'gaussian'"):
        preset("toy2d", prior="gaussian").validate()
    with pytest.raises(ValueError, match="loss: .*n_proj"):
        preset("toy2d", loss={"n_proj": 2}).validate()
    with pytest.raises(ValueError, match="diffusion training"):
        preset("digits-classifier", coupling="ot").validate()


def test_repa_takes_an_autoencoder_encoder_by_name(monkeypatch, tmp_path):
    """A zoo autoencoder (``encode`` -> (mean, logvar)) is a valid encoder: its mean is aligned."""
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        image_size: int = 8

    class AE(torch.nn.Module):
        config = Cfg()

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3, stride=2, padding=1)

        def encode(self, x):
            m = self.conv(x)
            return m, torch.zeros_like(m)

    real_names = ed.zoo.names
    monkeypatch.setattr(ed.zoo, "names", lambda: real_names() + ["tiny-ae"])
    real_load = ed.zoo.load
    monkeypatch.setattr(ed.zoo, "load", lambda n: AE() if n == "tiny-ae" else real_load(n))
    tr = Trainer(preset("digits-unet", **TINY, repa={"encoder": "tiny-ae", "layer": 3}), tmp_path, progress=False)
    assert tr.repa.head[-1].out_features == 2 * 4 * 4
    tr.run()
    assert tr.step == 4


def test_named_tricks_are_valid_overrides_of_every_diffusion_preset():
    from effdiff.training import tricks
    for base_name in ("digits-unet", "digits-dit", "mnist-unet"):
        base = preset(base_name)
        for name in tricks.TRICKS:
            cfg = preset(base_name, **tricks.overrides(name, base)).validate()
            assert cfg.loss.get("density") == base.loss.get("density")       # the preset's density is kept
    o = tricks.overrides("min-snr", preset("digits-dit"))
    assert o["loss"] == {**preset("digits-dit").loss, "weighting": "min-snr", "gamma": 5.0}
    with pytest.raises(KeyError, match="unknown training trick"):
        tricks.overrides("dropout", preset("toy2d"))
