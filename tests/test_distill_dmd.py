"""DMD: the generator gradient vanishes when the fake score is the real one; on a 2-D Gaussian
teacher with an exact score, DMD moves a one-step generator's mean and covariance toward the
target; training (fake score + its optimizer, backward simulation) resumes bit-identically; the
student composes with ed.sample."""
import json
import math

import pytest
import torch
from torch import nn

import effdiff as ed
from effdiff import distill
from effdiff.distill import dmd
from effdiff.denoisers import guided
from effdiff.distill import pairs as P
from effdiff.process import Flow
from effdiff.sampling import randn

from test_distill import cfg_for, tiny_teacher, x_and_labels


def test_dm_gradient_is_zero_when_fake_equals_real():
    teacher = tiny_teacher()
    fake = distill.from_teacher(teacher, distill.StudentSpec("dmd-fake")).eval()
    x, y = x_and_labels(6)
    g = torch.Generator().manual_seed(0)
    sigma = dmd.dm_sigma(teacher.process, 6, g)
    eps = torch.randn(x.shape, generator=g)
    # guidance baked into the real score: "fake == real" is the fake equal to the guided teacher
    for w, f in ((None, fake), (2.0, guided(fake, 2.0))):
        grad = dmd.dm_grad(x, teacher, f, sigma, eps, y, w)
        assert torch.equal(grad, torch.zeros_like(x))
        xr = x.clone().requires_grad_(True)
        dmd.dm_loss(xr, grad).sum().backward()
        assert torch.equal(xr.grad, torch.zeros_like(x))
    with torch.no_grad():                                     # a different fake score: a non-zero gradient
        next(fake.parameters()).add_(0.1)
    assert dmd.dm_grad(x, teacher, fake, sigma, eps, y).abs().sum() > 0
    # the surrogate's gradient in x is the DM gradient (per element, / numel of a sample)
    xr = x.clone().requires_grad_(True)
    grad = dmd.dm_grad(x, teacher, fake, sigma, eps, y)
    dmd.dm_loss(xr, grad).sum().backward()
    assert torch.allclose(xr.grad, grad / x[0].numel())


class Gaussian(nn.Module):
    """The exact denoiser of N(μ, L Lᵀ) in 2-D: D(x, σ) = μ + Σ (Σ + σ² I)⁻¹ (x - μ)."""

    def __init__(self, mu, L):
        super().__init__()
        self.mu, self.L = nn.Parameter(torch.as_tensor(mu, dtype=torch.float64)), nn.Parameter(
            torch.as_tensor(L, dtype=torch.float64))

    def cov(self):
        return self.L @ self.L.T

    def forward(self, x, sigma, cond=None):
        lam, U = torch.linalg.eigh(self.cov())                # S (S + σ² I)⁻¹ = U diag(λ / (λ + σ²)) Uᵀ
        shrink = lam / (lam + sigma.double()[:, None] ** 2)   # [B, 2]
        return (self.mu + ((x.double() - self.mu) @ U) * shrink @ U.T).to(x.dtype)


def test_dmd_moves_a_one_step_generator_toward_an_exact_gaussian_target():
    """Target N(μ*, Σ*), exact teacher. The generator G(z) = b + A z starts collapsed (as a one-step
    jump of the teacher from σ_max is: the posterior mean, covariance ~ 0); the fake score (same
    family, initialised at the teacher) learns G's distribution with the denoising loss, 5 updates per
    generator step. After 200 DMD steps the mean and covariance errors must have shrunk."""
    torch.manual_seed(0)
    mu_t, L_t = torch.tensor([1.0, -0.5], dtype=torch.float64), torch.tensor([[0.6, 0.0], [0.3, 0.4]], dtype=torch.float64)
    real = Gaussian(mu_t, L_t).requires_grad_(False)
    fake = Gaussian(mu_t, L_t)
    G = nn.Linear(2, 2).double()
    with torch.no_grad():
        G.weight.copy_(0.05 * torch.eye(2, dtype=torch.float64))
        G.bias.copy_(torch.tensor([0.2, 0.3], dtype=torch.float64))
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-2, betas=(0.0, 0.999))
    opt_f = torch.optim.Adam(fake.parameters(), lr=1e-2, betas=(0.0, 0.999))
    g = torch.Generator().manual_seed(1)
    B = 128
    log_sigma = lambda n: torch.exp(torch.empty(n, dtype=torch.float64).uniform_(math.log(0.05), math.log(5.0), generator=g))  # noqa: E731

    def errors():
        with torch.no_grad():
            x = G(torch.randn(20000, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64))
        return float((x.mean(0) - mu_t).norm()), float((torch.cov(x.T) - L_t @ L_t.T).norm())

    m0, c0 = errors()
    for _ in range(200):
        for _ in range(5):                                    # fake score: denoising loss on G's samples
            with torch.no_grad():
                x0 = G(torch.randn(B, 2, generator=g, dtype=torch.float64))
            s = log_sigma(B)
            xt = x0 + s[:, None] * torch.randn(B, 2, generator=g, dtype=torch.float64)
            loss_f = ((fake(xt, s) - x0) ** 2 / s[:, None] ** 2).mean()
            opt_f.zero_grad()
            loss_f.backward()
            opt_f.step()
        x = G(torch.randn(B, 2, generator=g, dtype=torch.float64))
        s = log_sigma(B)
        grad = dmd.dm_grad(x, real, fake, s, torch.randn(B, 2, generator=g, dtype=torch.float64))
        opt_g.zero_grad()
        dmd.dm_loss(x, grad).mean().backward()
        opt_g.step()
    m1, c1 = errors()
    assert m1 < 0.1 * m0 and c1 < 0.1 * c0, (m0, m1, c0, c1)


@pytest.mark.parametrize("args", [
    {"fake_updates": 2},
    {"fake_updates": 1, "steps": 2, "guidance": 2.0},
])
def test_dmd_training_resumes_bit_identically(tmp_path, args):
    teacher = tiny_teacher()
    cfg = cfg_for("dmd", teacher, args, steps=4, p_uncond=0.0)
    whole = distill.DistillTrainer(cfg, tmp_path / "a", progress=False, teacher=teacher).run()
    distill.DistillTrainer(cfg, tmp_path / "b", progress=False, teacher=teacher).run(stop_after=2)
    resumed = distill.DistillTrainer(cfg, tmp_path / "b", progress=False, teacher=teacher).run(resume=True)
    assert resumed.step == whole.step == 4
    assert resumed.method.teacher.calls == whole.method.teacher.calls == 4 * 8 * (2 if "guidance" in args else 1)
    for name in ("net", "ema"):
        a, b = getattr(whole, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs after resume"
    fa, fb = whole.method.extras["fake"].state_dict(), resumed.method.extras["fake"].state_dict()
    assert all(torch.equal(v, fb[k]) for k, v in fa.items()), "fake score differs after resume"
    f0 = distill.from_teacher(teacher, distill.StudentSpec()).state_dict()
    assert any(not torch.equal(v, f0[k]) for k, v in fa.items()), "the fake score was not trained"
    oa, ob = whole.method.optimizers["fake"].state_dict(), resumed.method.optimizers["fake"].state_dict()
    assert json.loads(json.dumps(oa["param_groups"])) == json.loads(json.dumps(ob["param_groups"]))  # betas: tuple -> list
    assert all(torch.equal(oa["state"][i][k], ob["state"][i][k]) for i in oa["state"] for k in oa["state"][i])


def test_dmd_student_composes_with_sample_and_regression_uses_pairs(tmp_path):
    teacher = tiny_teacher(Flow(), prediction="velocity")
    P.generate(teacher, tmp_path / "pairs", config=P.PairsConfig("tiny", n=8, solver="ddim", schedule="uniform",
                                                                   steps=2), progress=False)
    cfg = cfg_for("dmd", teacher, {"fake_updates": 1, "regression": 0.25, "pairs": str(tmp_path / "pairs")},
                  steps=2, p_uncond=0.0)
    tr = distill.DistillTrainer(cfg, tmp_path / "run", progress=False, teacher=teacher).run()
    tr.export()
    st = distill.load(tmp_path / "run" / "student-1step")
    assert (st.spec.method, st.spec.solver, st.spec.steps) == ("dmd", "ddim", 1)
    y = torch.arange(3)
    res = st.generate(3, cond=y, seed=0, return_info=True)
    sig = st.grid()
    x = ed.sample(st, randn((3, 1, 8, 8), seed=0) * float(sig[0]), sig, "ddim", cond=y, seed=0)
    assert res.nfe == 1 and torch.equal(res.x, x) and torch.isfinite(x).all()
    with torch.no_grad():                                     # one step = the generator's jump from σ_max
        assert torch.allclose(x, st(randn((3, 1, 8, 8), seed=0) * float(sig[0]), sig[0].float(), y), atol=1e-6)
    multi = distill.from_teacher(teacher, distill.StudentSpec("dmd", "consistency", 2)).eval()
    xT = randn((3, 1, 8, 8), seed=0) * float(multi.grid()[0])
    assert ed.sample(multi, xT, multi.grid(), "consistency", cond=y, seed=0, return_info=True).nfe == 2


def test_dmd_bad_args_are_clear_errors():
    teacher = tiny_teacher()
    with pytest.raises(ValueError, match="needs pairs"):
        distill.DistillTrainer(cfg_for("dmd", teacher, {"regression": 0.5}, steps=2), "/nonexistent", teacher=teacher)
    with pytest.raises(ValueError, match="t_range"):
        distill.DistillTrainer(cfg_for("dmd", teacher, {"t_range": (0.5, 0.2)}, steps=2), "/nonexistent",
                               teacher=teacher)


def test_dmd_presets_exist():
    from effdiff.distill import presets
    for t in ("digits-dit", "digits-unet"):
        c = presets.get(f"{t}-dmd")
        assert c.method == "dmd" and c.teacher == t and c.p_uncond == 0.0
