"""Forward processes: t <-> σ conversions, VP identities, DDPM's table, derivatives, configs."""
import math

import pytest
import torch

from effdiff import process as P

VP_CASES = [(s, d) for s in ("linear", "cosine", "laplace") for d in (True, False)]


def all_processes():
    out = [P.VP(s, discrete=d) for s, d in VP_CASES]
    out += [P.VE(), P.VE(0.02, 80.0), P.EDM(), P.Flow()]
    return out


def ids(p):
    return repr(p)


def interior_t(p, n=257):
    """Times strictly inside [t_min, t_max], avoiding table nodes and the Laplace kink at 0.5."""
    u = torch.linspace(0.013, 0.987, n, dtype=torch.float64)
    return p.t_min + u * (p.t_max - p.t_min)


@pytest.mark.parametrize("p", all_processes(), ids=ids)
def test_t_sigma_round_trip(p):
    t = interior_t(p)
    s = p.t_to_sigma(t)
    assert s.dtype == torch.float64
    assert (s > 0).all() and torch.isfinite(s).all()
    assert (s.diff() > 0).all(), "σ must increase with t"
    torch.testing.assert_close(p.sigma_to_t(s), t, rtol=1e-9, atol=1e-9)
    # and the other way: σ -> t -> σ over the process's σ range
    sg = torch.exp(torch.linspace(math.log(p.sigma_min) + 1e-3, math.log(p.sigma_max) - 1e-3, 101, dtype=torch.float64))
    # rtol 1e-8: near t = 1 the Laplace schedule resolves 1 - t ~ 5e-9 only to float64 spacing
    torch.testing.assert_close(p.t_to_sigma(p.sigma_to_t(sg)), sg, rtol=1e-8, atol=0)


@pytest.mark.parametrize("p", all_processes(), ids=ids)
def test_sigma_is_ratio_and_lambda(p):
    t = interior_t(p)
    torch.testing.assert_close(p.sigma(t) / p.alpha(t), p.t_to_sigma(t), rtol=1e-12, atol=0)
    torch.testing.assert_close(p.lam(t), -torch.log(p.t_to_sigma(t)), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(p.alpha_of_sigma(p.t_to_sigma(t)), p.alpha(t), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("schedule,discrete", VP_CASES)
def test_vp_is_variance_preserving(schedule, discrete):
    p = P.VP(schedule, discrete=discrete)
    t = interior_t(p)
    torch.testing.assert_close(p.alpha(t) ** 2 + p.sigma(t) ** 2, torch.ones_like(t), rtol=0, atol=1e-14)


def test_discrete_linear_table_is_ddpm():
    p = P.VP("linear", discrete=True)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    assert torch.equal(p.alphas_cumprod, abar)
    # integer t hits the table: alpha(t)^2 = alphas_cumprod[t]
    t = torch.tensor([0.0, 1.0, 10.0, 499.0, 998.0, 999.0], dtype=torch.float64)
    torch.testing.assert_close(p.alpha(t) ** 2, abar[t.long()], rtol=1e-13, atol=0)
    torch.testing.assert_close(p.t_to_sigma(t), ((1 - abar) / abar).sqrt()[t.long()], rtol=1e-13, atol=0)
    assert p.sigma_min == pytest.approx(math.sqrt((1 - abar[0]) / abar[0]), rel=1e-13)
    assert p.sigma_max == pytest.approx(157.4, rel=2e-3)  # the well-known DDPM σ_max
    assert (p.t_min, p.t_max, p.num_steps) == (0.0, 999.0, 1000)
    assert torch.equal(p.c_noise(torch.tensor(17.5)), torch.tensor(17.5, dtype=torch.float64))


def test_continuous_closed_forms():
    # continuous linear (Song et al. 2021): abar = exp(-t^2 (b1-b0)/2 - t b0), b = 1000 beta
    p = P.VP("linear", discrete=False)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    abar = torch.exp(-0.5 * t ** 2 * (20.0 - 0.1) - t * 0.1)
    torch.testing.assert_close(p.alpha(t) ** 2, abar, rtol=1e-12, atol=0)
    torch.testing.assert_close(p.c_noise(t), 1000 * t)
    # cosine (Nichol & Dhariwal 2021)
    p = P.VP("cosine", discrete=False)
    f = lambda u: torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    torch.testing.assert_close(p.alpha(t) ** 2, f(t) / f(torch.zeros(1, dtype=torch.float64)), rtol=1e-12, atol=0)
    # flow: σ = t / (1 - t); VE: geometric; EDM: t = σ
    fl = P.Flow()
    torch.testing.assert_close(fl.t_to_sigma(t), t / (1 - t), rtol=1e-14, atol=0)
    ve = P.VE(0.01, 50.0)
    torch.testing.assert_close(ve.t_to_sigma(t), 0.01 * 5000.0 ** t, rtol=1e-13, atol=0)
    assert ve.sigma_min == pytest.approx(0.01) and ve.sigma_max == pytest.approx(50.0)
    e = P.EDM()
    torch.testing.assert_close(e.t_to_sigma(t), t)
    torch.testing.assert_close(e.c_noise(t), torch.log(t) / 4)


@pytest.mark.parametrize("p", all_processes(), ids=ids)
def test_derivatives_match_finite_differences(p):
    t = interior_t(p, 33)
    h = 1e-6 * max(1.0, p.t_max - p.t_min)
    if getattr(p, "discrete", False):
        t = t.floor() + 0.37  # stay inside one linear piece of the table
        h = 1e-4
    da, db = p.derivatives(t)
    fd_a = (p.alpha(t + h) - p.alpha(t - h)) / (2 * h)
    fd_b = (p.sigma(t + h) - p.sigma(t - h)) / (2 * h)
    torch.testing.assert_close(da, fd_a, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(db, fd_b, rtol=1e-5, atol=1e-9)


def test_derivatives_closed_form_flow_and_ve():
    t = torch.tensor([0.2, 0.7], dtype=torch.float64)
    da, db = P.Flow().derivatives(t)
    assert torch.equal(da, -torch.ones_like(t)) and torch.equal(db, torch.ones_like(t))
    for v in (t, 0.3, t[:, None]):          # Flow's closed form == the generic autograd one, shape and dtype too
        for x, y in zip(P.Flow().derivatives(v), P.Process.derivatives(P.Flow(), v)):
            assert torch.equal(x, y) and x.shape == y.shape and x.dtype == y.dtype
    ve = P.VE(0.01, 50.0)
    da, db = ve.derivatives(t)
    assert torch.equal(da, torch.zeros_like(t))
    torch.testing.assert_close(db, ve.sigma(t) * math.log(5000.0), rtol=1e-13, atol=0)


CONFIG_CASES = all_processes() + [
    P.VP("linear", discrete=False, t_min=0.01),
    P.VP("cosine", discrete=True, num_steps=250),
    P.VP(betas=torch.linspace(1e-3, 0.05, 50, dtype=torch.float64)),
    P.VE(0.05, 20.0), P.EDM(0.01, 10.0, 1.0), P.Flow(1e-3, 0.99),
]


@pytest.mark.parametrize("p", CONFIG_CASES, ids=ids)
def test_from_config_round_trip(p):
    import json
    cfg = json.loads(json.dumps(p.config()))  # configs must survive JSON
    q = P.from_config(cfg)
    assert type(q) is type(p)
    assert q.config() == p.config()
    assert (q.t_min, q.t_max) == (p.t_min, p.t_max)
    t = interior_t(p, 17)
    assert torch.equal(q.t_to_sigma(t), p.t_to_sigma(t))


@pytest.mark.parametrize("make", [
    lambda: P.VP("quadratic"),
    lambda: P.VP(num_steps=1),
    lambda: P.VP(betas=[0.1, 1.5]),
    lambda: P.VP(betas=[[0.1, 0.2]]),
    lambda: P.VP(betas=[0.2, -0.1]),
    lambda: P.VE(1.0, 0.5),
    lambda: P.VE(0.0, 1.0),
    lambda: P.EDM(80.0, 0.002),
    lambda: P.Flow(0.5, 0.2),
    lambda: P.Flow(0.0, 1.0),
    lambda: P.from_config({"name": "nope"}),
    lambda: P.from_config({}),
])
def test_bad_arguments_raise(make):
    with pytest.raises(ValueError):
        make()
