"""Sampling schedules: float64, strictly decreasing, length n + 1, exact 0 at the end."""
import math

import pytest
import torch

from effdiff import timesteps as T
from effdiff import process as P

VPD = P.VP("linear", discrete=True)
FLOW = P.Flow()
VPC = P.VP("cosine", discrete=False)


def schedules(n):
    yield "karras", T.karras(n, 0.002, 80.0), 80.0
    yield "exponential", T.exponential(n, 0.01, 50.0), 50.0
    yield "logsnr", T.logsnr_uniform(n, VPC), VPC.sigma_max
    yield "logsnr-range", T.logsnr_uniform(n, sigma_min=0.05, sigma_max=20.0), 20.0
    for proc in (VPD, FLOW, VPC):
        yield f"uniform-{proc.name}", T.uniform_t(n, proc), proc.sigma_max
        yield f"quadratic-{proc.name}", T.quadratic(n, proc), proc.sigma_max


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_schedule_invariants(n):
    for name, s, first in schedules(n):
        assert s.dtype == torch.float64, name
        assert s.shape == (n + 1,), name
        assert s[-1].item() == 0.0, name
        assert (s[:-1] > s[1:]).all(), name
        assert s[0].item() == pytest.approx(first, rel=1e-12), name


def test_full_is_every_table_step():
    s = T.full(VPD)
    assert s.dtype == torch.float64 and s.shape == (1001,) and s[-1].item() == 0.0
    assert (s[:-1] > s[1:]).all()
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    torch.testing.assert_close(s[:-1], ((1 - abar) / abar).sqrt().flip(0), rtol=1e-13, atol=0)
    assert s[0].item() == pytest.approx(VPD.sigma_max, rel=1e-14)
    with pytest.raises(ValueError, match="discrete"):
        T.full(VPC)


def test_karras_formula():
    n, lo, hi, rho = 10, 0.002, 80.0, 7.0
    s = T.karras(n, lo, hi, rho)
    i = torch.arange(n, dtype=torch.float64)
    ref = (hi ** (1 / rho) + i / (n - 1) * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    torch.testing.assert_close(s[:-1], ref, rtol=1e-14, atol=0)
    assert s[0].item() == pytest.approx(80.0, rel=1e-14) and s[-2].item() == pytest.approx(0.002, rel=1e-12)
    # rho = 1 is uniform in σ
    torch.testing.assert_close(T.karras(5, 1.0, 5.0, rho=1.0)[:-1], torch.tensor([5.0, 4, 3, 2, 1], dtype=torch.float64))
    s1 = T.karras(1, 0.1, 3.0)
    assert s1.shape == (2,) and s1[0].item() == pytest.approx(3.0, rel=1e-14) and s1[1].item() == 0.0


def test_resample_keeps_a_karras_grid_karras():
    """resample: a Karras grid of any length resamples to the Karras grid of the new length (the stream's
    lookahead solve in fewer steps); any grid keeps its end points; bad grids and step counts are refused."""
    for m, n in ((12, 8), (12, 6), (5, 12), (12, 12), (3, 1)):
        torch.testing.assert_close(T.resample(T.karras(m, 0.002, 80.0), n), T.karras(n, 0.002, 80.0),
                                   rtol=1e-12, atol=0)
    torch.testing.assert_close(T.resample(T.karras(9, 0.1, 10.0, rho=3.0), 4, rho=3.0), T.karras(4, 0.1, 10.0, rho=3.0),
                               rtol=1e-12, atol=0)
    e = T.resample(T.exponential(10, 0.01, 100.0), 4)
    assert e.shape == (5,) and e[0].item() == pytest.approx(100.0) and e[-2].item() == pytest.approx(0.01)
    assert e[-1].item() == 0.0 and bool((e[:-1].diff() < 0).all())
    for bad in (torch.tensor([3.0, 1.0]), torch.tensor([1.0, 3.0, 0.0]), torch.tensor([3.0, 0.0, 0.0])):
        with pytest.raises(ValueError, match="schedule"):
            T.resample(bad, 3)
    with pytest.raises(ValueError, match="steps"):
        T.resample(T.karras(4, 0.1, 1.0), 0)
    with pytest.raises(ValueError, match="one-step"):
        T.resample(T.karras(1, 0.1, 1.0), 2)


def test_exponential_and_uniform_t_closed_forms():
    s = T.exponential(5, 0.01, 100.0)
    torch.testing.assert_close(s[:-1], torch.tensor([100.0, 10.0, 1.0, 0.1, 0.01], dtype=torch.float64), rtol=1e-13, atol=0)
    torch.testing.assert_close(T.logsnr_uniform(5, sigma_min=0.01, sigma_max=100.0), s)
    # uniform in t on flow: t = linspace(t_max, t_min)
    t = torch.linspace(FLOW.t_max, FLOW.t_min, 6, dtype=torch.float64)
    torch.testing.assert_close(T.uniform_t(6, FLOW)[:-1], t / (1 - t), rtol=1e-12, atol=0)
    # quadratic: t = t_max + (1 - (1-u)^2) (t_min - t_max), denser near t_min
    u = torch.linspace(0, 1, 6, dtype=torch.float64)
    tq = 0.9 + (1 - (1 - u) ** 2) * (0.1 - 0.9)
    torch.testing.assert_close(T.quadratic(6, FLOW, t_min=0.1, t_max=0.9)[:-1], tq / (1 - tq), rtol=1e-13, atol=0)
    # discrete VP uniform spacing over integer steps hits the table
    s = T.uniform_t(4, VPD)
    torch.testing.assert_close(s[:-1], VPD.t_to_sigma(torch.tensor([999.0, 666.0, 333.0, 0.0])), rtol=1e-13, atol=0)


def test_get_by_name():
    torch.testing.assert_close(T.get("karras", 8, VPC), T.karras(8, VPC.sigma_min, VPC.sigma_max))
    torch.testing.assert_close(T.get("uniform", 8, FLOW), T.uniform_t(8, FLOW))
    torch.testing.assert_close(T.get("karras", 8, VPC, rho=3.0), T.karras(8, VPC.sigma_min, VPC.sigma_max, 3.0))


@pytest.mark.parametrize("call,match", [
    (lambda: T.karras(0, 0.1, 1.0), "positive integer"),
    (lambda: T.karras(2.5, 0.1, 1.0), "positive integer"),
    (lambda: T.karras(True, 0.1, 1.0), "positive integer"),
    (lambda: T.exponential(-3, 0.1, 1.0), "positive integer"),
    (lambda: T.karras(5, 1.0, 1.0), "sigma_min < sigma_max"),
    (lambda: T.karras(5, 2.0, 1.0), "sigma_min < sigma_max"),
    (lambda: T.exponential(5, 0.0, 1.0), "sigma_min < sigma_max"),
    (lambda: T.karras(5, 0.1, math.inf), "sigma_min < sigma_max"),
    (lambda: T.karras(5, 0.1, 1.0, rho=-1.0), "rho"),
    (lambda: T.karras(5, 0.1, 1.0, rho=0.0), "rho"),
    (lambda: T.uniform_t(0, FLOW), "positive integer"),
    (lambda: T.uniform_t(5, FLOW, t_min=0.5, t_max=0.2), "t range"),
    (lambda: T.uniform_t(5, FLOW, t_max=1.5), "t range"),
])
def test_invalid_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_unknown_schedule_name():
    with pytest.raises(KeyError, match="karras"):
        T.get("cosine-ish", 10, VPC)
