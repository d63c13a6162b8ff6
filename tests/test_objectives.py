"""Training losses: targets per parameterization, weightings, time densities."""
import pytest
import torch

import effdiff as ed
from effdiff.objectives import DENSITIES, DiffusionLoss, LossConfig, weight, x0_jacobian
from effdiff.process import VP, Flow


class Exact(torch.nn.Module):
    """A network that outputs its parameterization's exact target for a known (x0, eps)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.out = None

    def forward(self, x, t, y=None):
        return self.out + 0 * self.w


@pytest.mark.parametrize("prediction,process", [("eps", VP()), ("x0", VP(discrete=False)), ("v", VP("cosine", discrete=False)),
                                                ("velocity", Flow()), ("score", VP(discrete=False))])
@pytest.mark.parametrize("kind", ["none", "min-snr", "edm"])
def test_weighting_is_the_x0_space_weight_times_the_squared_jacobian(prediction, process, kind):
    """An output error e costs weight * e² in target space == λ_x0 * (J e)² in x0 space."""
    den = ed.Denoiser(Exact(), process, prediction)
    sigma = torch.tensor([0.05, 0.5, 3.0], dtype=torch.float64)
    t, a, b, da, db = den.coefficients(sigma)
    jac = x0_jacobian(prediction, sigma, a, b, da, db)
    # J from the wrapper itself: perturb the network output and watch D move
    x = torch.randn(3, 4, dtype=torch.float64)
    net = den.net
    net.out = torch.zeros(3, 4, dtype=torch.float64)
    d0 = den(x, sigma)
    net.out = torch.full((3, 4), 1e-3, dtype=torch.float64)
    d1 = den(x, sigma)
    assert torch.allclose((d1 - d0).abs()[:, 0] / 1e-3, jac.abs(), rtol=1e-6)
    lam = {"none": None, "min-snr": (1 / sigma ** 2).clamp(max=5.0), "edm": (sigma ** 2 + 0.25) / (sigma * 0.5) ** 2}[kind]
    w = weight(kind, sigma, jac)
    if lam is None:
        assert torch.equal(w, torch.ones_like(sigma))
    else:
        assert torch.allclose(w, lam * jac ** 2)


def test_min_snr_matches_the_papers_eps_and_v_forms():
    sigma = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    snr = 1 / sigma ** 2
    assert torch.allclose(weight("min-snr", sigma, sigma), snr.clamp(max=5) / snr)
    b = sigma / torch.sqrt(1 + sigma ** 2)          # VP v-prediction: J = b
    assert torch.allclose(weight("min-snr", sigma, b), snr.clamp(max=5) / (snr + 1))


def test_loss_is_zero_for_the_exact_target_and_positive_otherwise():
    process = VP(discrete=False)
    den = ed.Denoiser(Exact(), process, "eps")
    loss = DiffusionLoss(LossConfig(weighting="edm"))
    x0 = torch.randn(8, 1, 4, 4, dtype=torch.float64)
    # replay the loss's own draws: sigma first, then eps, from the same generator
    g1 = torch.Generator().manual_seed(5)
    loss.sample_sigma(process, 8, g1)
    eps1 = torch.randn(x0.shape, generator=g1, dtype=x0.dtype)
    den.net.out = eps1
    assert float(loss(den, x0, None, torch.Generator().manual_seed(5)).abs().max()) < 1e-20
    den.net.out = eps1 + 0.1
    assert float(loss(den, x0, None, torch.Generator().manual_seed(5)).min()) > 0


def test_unknown_weighting_and_density_name_the_problem():
    with pytest.raises(ValueError, match="weighting 'p2'"):
        DiffusionLoss(LossConfig(weighting="p2"))
    with pytest.raises(ValueError, match="time density 'beta'"):
        DiffusionLoss(LossConfig(density="beta"))


@pytest.mark.parametrize("name", sorted(DENSITIES))
def test_densities_stay_in_the_process_range(name):
    for process in (VP(), VP(discrete=False), Flow()):
        s = DENSITIES[name](process, 4000, torch.Generator().manual_seed(0))
        assert s.min() >= process.sigma_min * (1 - 1e-9) and s.max() <= process.sigma_max * (1 + 1e-9)


def test_lognormal_for_flow_is_logit_normal_t():
    s = DENSITIES["lognormal"](Flow(t_min=1e-6, t_max=1 - 1e-6), 20000, torch.Generator().manual_seed(0),
                               p_mean=0.0, p_std=1.0)
    logit_t = torch.log(s)          # t = σ/(1+σ) so logit(t) = log σ
    assert abs(float(logit_t.mean())) < 0.03 and abs(float(logit_t.std()) - 1) < 0.03
