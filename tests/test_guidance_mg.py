"""Model Guidance's loss on 1-D Gaussians whose guided target is known in closed form, and its trainer."""
import pytest
import torch
from torch import nn

from effdiff.denoisers import Denoiser
from effdiff.guidance.model_guidance import MGConfig, guided_target, mg_loss, w_for_cfg_scale
from effdiff.process import VE

SIGMA = 0.8
MU = torch.tensor([-1.0, 2.0, 0.5])      # class 0, class 1, null (the "unconditional" Gaussian)
S = torch.tensor([0.5, 0.3, 1.0])


def exact_eps(x, c):
    """E[eps | x, c] for x = x0 + σ eps, x0 ~ N(μ_c, s_c²): σ (x - μ_c) / (s_c² + σ²)."""
    return SIGMA * (x - MU[c]) / (S[c] ** 2 + SIGMA ** 2)


class PerClassLinear(nn.Module):
    """out = A[c] x + B[c]: the exact eps of a Gaussian at one σ is linear in x."""

    def __init__(self, a=None, b=None):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(3) if a is None else a)
        self.b = nn.Parameter(torch.zeros(3) if b is None else b)

    def forward(self, x, c_noise, labels):
        return self.a[labels].view(-1, 1) * x + self.b[labels].view(-1, 1)


def exact_net():
    a = SIGMA / (S ** 2 + SIGMA ** 2)
    return PerClassLinear(a.clone(), (-a * MU).clone()).requires_grad_(False)


def fit(w, guide, steps=1500, seed=0):
    """Adam on the MG loss; batches: classes 0/1 with 20% of labels dropped to the null class."""
    g = torch.Generator().manual_seed(seed)
    net = PerClassLinear()
    den = Denoiser(net, VE(0.01, 10.0), "eps", num_classes=2)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        y = torch.randint(0, 2, (2048,), generator=g)
        y = torch.where(torch.rand(2048, generator=g) < 0.2, torch.full_like(y, 2), y)
        x0 = (MU[y] + S[y] * torch.randn(2048, generator=g)).view(-1, 1)
        eps = torch.randn(x0.shape, generator=g)
        loss = mg_loss(den, guide, x0, y, torch.full((2048,), SIGMA, dtype=torch.float64), eps, w).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net


def line(net, c):
    xs = torch.linspace(-2, 3, 11).view(-1, 1)
    with torch.no_grad():
        return net(xs, None, torch.full((11,), c)).flatten(), xs


def test_frozen_exact_guide_gives_cfg_at_one_plus_w():
    w = 0.6
    net = fit(w, exact_net())
    for c in (0, 1):
        got, xs = line(net, c)
        e_c, e_u = exact_eps(xs.flatten(), c), exact_eps(xs.flatten(), 2)
        want = e_u + (1 + w) * (e_c - e_u)
        assert torch.allclose(got, want, atol=0.03), (c, got, want)
        assert not torch.allclose(got, e_c, atol=0.1)          # and it is not the plain conditional eps
    got_u, xs = line(net, 2)
    assert torch.allclose(got_u, exact_eps(xs.flatten(), 2), atol=0.03)   # the null class stays unguided


def test_self_guide_fixed_point_is_cfg_at_one_over_one_minus_w():
    w = w_for_cfg_scale(2.0)
    assert w == 0.5
    net = fit(w, None, steps=2500)
    for c in (0, 1):
        got, xs = line(net, c)
        e_c, e_u = exact_eps(xs.flatten(), c), exact_eps(xs.flatten(), 2)
        assert torch.allclose(got, e_u + 2.0 * (e_c - e_u), atol=0.04), (c, got)


def test_w_zero_is_the_plain_loss_and_target_helper():
    net = exact_net()
    den = Denoiser(net, VE(0.01, 10.0), "eps", num_classes=2)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(16, 1, generator=g), torch.randn(16, 1, generator=g)
    y, sig = torch.randint(0, 3, (16,), generator=g), torch.full((16,), SIGMA, dtype=torch.float64)
    from effdiff.objectives import DiffusionLoss
    assert torch.allclose(mg_loss(den, None, x0, y, sig, eps, 0.0), DiffusionLoss()(den, x0, y, sigma=sig, eps=eps))
    t = torch.zeros(2, 1)
    out = guided_target(t, torch.ones(2, 1), torch.zeros(2, 1), 0.5, torch.tensor([True, False]))
    assert out.flatten().tolist() == [0.5, 0.0]


def test_config_checks():
    with pytest.raises(ValueError):
        MGConfig(w=1.0)
    with pytest.raises(ValueError):
        MGConfig(guide="teacher")
    assert MGConfig(w=0.4, schedule="linear-warmup", warmup_steps=10).w_at(5) == pytest.approx(0.2)


def test_trainer_fine_tunes_a_zoo_model_and_resumes(tmp_path):
    from effdiff.guidance.mg_train import preset, train, MGTrainer
    cfg = preset("digits-dit-mg", steps=4, batch_size=8, ckpt_every=2, warmup=1)
    MGTrainer(cfg, tmp_path / "a", progress=False).run(stop_after=2)
    path = train(cfg, tmp_path / "a", resume=True, progress=False)
    ref = train(cfg, tmp_path / "b", progress=False)
    from effdiff import checkpoint as ckpt
    ta, meta = ckpt.load(path)
    tb, _ = ckpt.load(ref)
    assert all(torch.equal(ta[k], tb[k]) for k in ta)        # resumed == uninterrupted
    assert meta["card"]["training"]["init"] == "digits-dit" and meta["card"]["steps"] == 4
