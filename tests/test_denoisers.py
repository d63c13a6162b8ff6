"""Network -> denoiser wrappers reproduce the exact Gaussian denoiser; EDM preconditioning; CFG."""
import math

import pytest
import torch
from torch import nn

import effdiff as ed
from effdiff import process as P
from effdiff.denoisers import Denoiser, EDMDenoiser, CFG, guided

MU, S2 = 0.7, 0.25  # data x0 ~ N(MU, S2 I)


def d_star(x, sigma):
    """Exact denoiser E[x0 | x0 + σ eps = x] for Gaussian data."""
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return MU + S2 / (S2 + s ** 2) * (x - MU)


def c_noise_to_t(proc, c):
    if isinstance(proc, P.EDM):
        return torch.exp(4 * c)
    if isinstance(proc, P.VP) and proc.discrete:
        return c
    return c / 1000.0


def coeffs(proc, t):
    """(σ, a, b, da/dt, db/dt) of xn = a x0 + b eps, written out by hand per process."""
    t = t.double()
    if isinstance(proc, P.VE):
        s = proc._smin * (proc._smax / proc._smin) ** t
        return s, torch.ones_like(t), s, torch.zeros_like(t), s * math.log(proc._smax / proc._smin)
    if isinstance(proc, P.Flow):
        return t / (1 - t), 1 - t, t, -torch.ones_like(t), torch.ones_like(t)
    if isinstance(proc, P.VP) and proc.discrete:
        lo = t.floor().long().clamp(max=proc.num_steps - 2)
        ls = proc.log_sigmas
        k = ls[lo + 1] - ls[lo]                    # d log σ / dt on this piece
        s = torch.exp(ls[lo] + (t - lo) * k)
        a = 1 / torch.sqrt(1 + s ** 2)
        return s, a, s * a, -s ** 2 * a ** 3 * k, s * a ** 3 * k
    if isinstance(proc, P.VP) and proc.schedule == "cosine":
        c0 = math.cos(0.008 / 1.008 * math.pi / 2)
        u = (t + 0.008) / 1.008 * math.pi / 2
        a = torch.cos(u) / c0
        da = -torch.sin(u) / c0 * math.pi / 2 / 1.008
        b = torch.sqrt(1 - a ** 2)
        return b / a, a, b, da, -a * da / b
    raise NotImplementedError(proc)


class ExactNet(nn.Module):
    """Outputs the exact target of ``prediction`` for Gaussian data, given (xn, c_noise)."""

    def __init__(self, proc, prediction):
        super().__init__()
        self.proc, self.prediction = proc, prediction
        self.dummy = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.seen = []

    def forward(self, xn, c_noise, labels):
        self.seen.append(c_noise.clone())
        t = c_noise_to_t(self.proc, c_noise)
        s, a, b, da, db = (v.reshape(-1, 1) for v in coeffs(self.proc, t))
        x = xn / a                                   # back to VE form
        x0 = d_star(x, s.flatten())
        eps = (x - x0) / s
        return {"eps": eps, "x0": x0, "v": a * eps - b * x0, "velocity": da * x0 + db * eps,
                "score": -eps / b}[self.prediction]


PROCS = [P.VP("linear", discrete=True), P.VP("cosine", discrete=False), P.VE(), P.Flow()]
SIGMAS = torch.tensor([0.03, 0.2, 0.77, 1.0, 2.9, 13.0, 41.0], dtype=torch.float64)


@pytest.mark.parametrize("proc", PROCS, ids=repr)
@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "velocity", "score"])
def test_wrapper_reproduces_exact_denoiser(proc, prediction):
    g = torch.Generator().manual_seed(0)
    x0 = MU + math.sqrt(S2) * torch.randn(len(SIGMAS), 5, generator=g, dtype=torch.float64)
    x = x0 + SIGMAS[:, None] * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    net = ExactNet(proc, prediction)
    D = Denoiser(net, proc, prediction)
    out = D(x, SIGMAS)
    assert out.dtype == torch.float64 and out.shape == x.shape
    torch.testing.assert_close(out, d_star(x, SIGMAS), rtol=1e-6, atol=1e-6)
    # the network was fed the process's own time input
    torch.testing.assert_close(net.seen[-1], proc.c_noise(proc.sigma_to_t(SIGMAS)), rtol=1e-12, atol=0)
    # a scalar σ broadcasts over the batch
    torch.testing.assert_close(D(x, 0.77), d_star(x, torch.full((len(x),), 0.77, dtype=torch.float64)),
                               rtol=1e-6, atol=1e-6)


def test_c_noise_per_process():
    s = torch.tensor([0.5, 2.0], dtype=torch.float64)
    vp = P.VP("linear", discrete=True)
    assert torch.equal(vp.c_noise(vp.sigma_to_t(s)), vp.sigma_to_t(s))
    vc = P.VP("linear", discrete=False)
    torch.testing.assert_close(vc.c_noise(vc.sigma_to_t(s)), 1000 * vc.sigma_to_t(s))
    torch.testing.assert_close(P.EDM().c_noise(s), torch.log(s) / 4)


def test_edm_denoiser_with_exact_F():
    sd = 0.5

    class F(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1, dtype=torch.float64))

        def forward(self, xin, c_noise, labels):
            s = torch.exp(4 * c_noise)
            c = torch.sqrt(s ** 2 + sd ** 2)[:, None]
            x = xin * c                                  # c_in = 1 / sqrt(σ² + σd²)
            c_skip = sd ** 2 / c ** 2
            c_out = s[:, None] * sd / c
            return (d_star(x, s) - c_skip * x) / c_out

    D = EDMDenoiser(F(), sigma_data=sd)
    x = torch.linspace(-3, 3, 7 * 4, dtype=torch.float64).reshape(7, 4)
    torch.testing.assert_close(D(x, SIGMAS), d_star(x, SIGMAS), rtol=1e-9, atol=1e-9)
    c_skip, c_out, c_in, c_noise = D.preconditioning(SIGMAS)
    torch.testing.assert_close(c_skip, sd ** 2 / (SIGMAS ** 2 + sd ** 2))
    torch.testing.assert_close(c_out, SIGMAS * sd / torch.sqrt(SIGMAS ** 2 + sd ** 2))
    torch.testing.assert_close(c_in, 1 / torch.sqrt(SIGMAS ** 2 + sd ** 2))
    torch.testing.assert_close(c_noise, torch.log(SIGMAS) / 4)


def test_unknown_prediction_raises():
    with pytest.raises(ValueError, match="prediction"):
        Denoiser(ExactNet(P.VE(), "eps"), P.VE(), "epsilon")


def test_sigma_shape_checked():
    D = Denoiser(ExactNet(P.VE(), "eps"), P.VE(), "eps")
    x = torch.zeros(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="sigma"):
        D(x, torch.ones(2, dtype=torch.float64))


# ---- classifier-free guidance -------------------------------------------------------

class FakeCond:
    """A class-conditional denoiser with 10 classes (null = 10) that logs its batch sizes."""
    cond_classes, null_class = 10, 10

    def __init__(self):
        self.calls, self.branches = [], []

    def __call__(self, x, sigma, cond=None):
        self.calls.append(x.shape[0])
        ctx = ed.current_context()
        self.branches.append(None if ctx is None else ctx.branch)
        if cond is None:
            cond = torch.full((x.shape[0],), 10)
        return x / (1 + sigma[:, None] ** 2) + 0.1 * cond.to(x.dtype)[:, None] ** 2


def test_cfg_formula_and_one_batched_call():
    den = FakeCond()
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    cond = torch.tensor([0, 3, 7, 9])
    w = 4.5
    out = CFG(den, scale=w)(x, sigma, cond)
    assert den.calls == [8]                                  # one call, [x; x]
    d_c = x / (1 + sigma[:, None] ** 2) + 0.1 * cond.double()[:, None] ** 2
    d_u = x / (1 + sigma[:, None] ** 2) + 0.1 * 100.0
    torch.testing.assert_close(out, d_u + w * (d_c - d_u), rtol=1e-14, atol=1e-12)
    # inside a sampling loop the call is marked as the cfg branch and counts one NFE
    den2 = FakeCond()
    res = ed.sample(CFG(den2, scale=w), x, torch.tensor([4.0, 1.0, 0.0]), solver="euler", cond=cond, return_info=True)
    assert den2.calls == [8, 8] and den2.branches == ["cfg", "cfg"] and res.nfe == 2


def test_cfg_scale_one_and_no_cond_skip_uncond():
    x = torch.randn(4, 3, dtype=torch.float64)
    sigma = torch.full((4,), 1.5, dtype=torch.float64)
    cond = torch.tensor([1, 2, 3, 4])
    den = FakeCond()
    out = CFG(den, scale=1.0)(x, sigma, cond)
    assert den.calls == [4]
    assert torch.equal(out, FakeCond()(x, sigma, cond))
    den = FakeCond()
    CFG(den, scale=3.0)(x, sigma, None)
    assert den.calls == [4]
    den = FakeCond()
    assert guided(den, 1.0) is den
    assert isinstance(guided(den, 2.0), CFG)


def test_cfg_guidance_interval():
    den = FakeCond()
    x = torch.randn(4, 3, dtype=torch.float64)
    sigma = torch.tensor([0.5, 2.0, 5.0, 10.0], dtype=torch.float64)
    cond = torch.tensor([2, 2, 2, 2])
    w = 3.0
    out = CFG(den, scale=w, interval=(1.0, 6.0))(x, sigma, cond)
    assert den.calls == [8]
    d_c = FakeCond()(x, sigma, cond)
    d_u = FakeCond()(x, sigma, torch.full((4,), 10))
    inside = torch.tensor([False, True, True, False])
    expect = torch.where(inside[:, None], d_u + w * (d_c - d_u), d_c)
    torch.testing.assert_close(out, expect, rtol=1e-14, atol=1e-12)
    # wholly outside the interval: no unconditional evaluation at all
    den = FakeCond()
    out = CFG(den, scale=w, interval=(1.0, 6.0))(x, torch.full((4,), 20.0, dtype=torch.float64), cond)
    assert den.calls == [4]


def test_cfg_rescale_matches_conditional_std():
    den = FakeCond()
    x = torch.randn(3, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    sigma = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    cond = torch.tensor([1, 5, 8])
    out = CFG(den, scale=5.0, rescale=1.0)(x, sigma, cond)
    d_c = FakeCond()(x, sigma, cond)
    eps_out, eps_c = (x - out) / sigma[:, None], (x - d_c) / sigma[:, None]
    torch.testing.assert_close(eps_out.std(1), eps_c.std(1), rtol=1e-10, atol=0)


def test_cfg_errors():
    net = ExactNet(P.VE(), "eps")
    D = Denoiser(net, P.VE(), "eps", num_classes=10)
    x = torch.randn(2, 5, dtype=torch.float64)
    s = torch.ones(2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 10\]"):
        CFG(D, scale=2.0)(x, s, torch.tensor([0, 11]))
    with pytest.raises(ValueError, match=r"class labels must lie"):
        D(x, s, torch.tensor([-1, 3]))
    with pytest.raises(ValueError, match="integer class labels"):
        D(x, s, torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match=r"shaped \[2\]"):
        D(x, s, torch.tensor([1, 2, 3]))
    # an unconditional denoiser has no null class to guide against
    with pytest.raises(ValueError, match="null"):
        CFG(lambda x, sigma, cond=None: x, scale=2.0)(x, s, torch.tensor([1, 2]))
    # None -> the null class
    seen = []
    net2 = ExactNet(P.VE(), "eps")
    net2.forward = lambda xn, c, labels: seen.append(labels) or torch.zeros_like(xn)
    Denoiser(net2, P.VE(), "eps", num_classes=10)(x, s)
    assert torch.equal(seen[0], torch.tensor([10, 10]))
