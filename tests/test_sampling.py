"""ed.sample: validation, NFE counting, the loop context, seeded noise and convergence order
on Gaussian data, whose probability-flow ODE has a closed-form solution."""
import math

import numpy as np
import pytest
import torch

import effdiff as ed
from effdiff import timesteps as T

MU, S2 = 0.3, 0.5 ** 2


def gauss(x, sigma, cond=None):
    """Exact denoiser for x0 ~ N(MU, S2 I)."""
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return MU + S2 / (S2 + s ** 2) * (x - MU)


def exact_flow(x_start, sigma_start, sigma):
    """Exact probability-flow ODE solution from (x_start, σ_start) to σ for Gaussian data."""
    return MU + math.sqrt(S2 + sigma ** 2) / math.sqrt(S2 + sigma_start ** 2) * (x_start - MU)


def x_T(b=4, d=3, sigma=10.0, seed=0):
    return sigma * torch.randn(b, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


SIG = T.karras(6, 0.05, 10.0)


# ---- validation ----------------------------------------------------------------------

def test_sigmas_must_end_in_zero():
    with pytest.raises(ValueError, match="end"):
        ed.sample(gauss, x_T(), torch.tensor([10.0, 1.0, 0.1]))


@pytest.mark.parametrize("sig,match", [
    ([10.0, 1.0, 3.0, 0.0], "decreasing"),
    ([10.0, 10.0, 0.0], "decreasing"),
    ([10.0, float("nan"), 0.0], "NaN"),
    ([10.0, -1.0, 0.0], "non-negative|decreasing"),
    ([0.0], "at least 2"),
    ([[10.0, 0.0]], "1-D"),
])
def test_bad_sigmas(sig, match):
    with pytest.raises(ValueError, match=match):
        ed.sample(gauss, x_T(), torch.tensor(sig, dtype=torch.float64))


def test_unknown_solver_lists_names():
    with pytest.raises(KeyError) as e:
        ed.sample(gauss, x_T(), SIG, solver="rk45-magic")
    msg = str(e.value)
    assert "rk45-magic" in msg and all(n in msg for n in ("euler", "heun", "ddim", "dpmpp-2m"))
    assert {"euler", "heun", "ddim", "ddpm", "dpmpp-2m"} <= set(ed.solvers.names())


def test_nan_input_and_nan_denoiser():
    x = x_T()
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ed.sample(gauss, x, SIG)
    with pytest.raises(FloatingPointError, match="step 0"):
        ed.sample(lambda x, s, c=None: x * float("nan"), x_T(), SIG)
    calls = []

    def late_nan(x, s, c=None):
        calls.append(1)
        return x * float("nan") if len(calls) == 3 else gauss(x, s)
    with pytest.raises(FloatingPointError, match="step 2"):
        ed.sample(late_nan, x_T(), SIG)


# ---- NFE, context, callbacks -----------------------------------------------------------

@pytest.mark.parametrize("solver,nfe", [("euler", lambda n: n), ("heun", lambda n: 2 * n - 1),
                                        ("dpmpp-2m", lambda n: n), ("ddim", lambda n: n), ("ddpm", lambda n: n)])
@pytest.mark.parametrize("n", [1, 2, 7])
def test_nfe_counting(solver, nfe, n):
    calls = []

    def D(x, s, c=None):
        calls.append(1)
        return gauss(x, s)
    res = ed.sample(D, x_T(), T.karras(n, 0.05, 10.0), solver=solver, seed=0, return_info=True)
    assert res.nfe == nfe(n) == len(calls)
    assert res.steps == n
    assert res.x.shape == (4, 3) and res.x.dtype == torch.float64


def test_loop_context_heun_and_callback():
    n = 5
    seen, cb = [], []

    def D(x, s, c=None):
        ctx = ed.current_context()
        seen.append((ctx.step, ctx.stage, ctx.num_steps, ctx.branch, float(ctx.sigma[0])))
        return gauss(x, s)
    sig = T.karras(n, 0.05, 10.0)
    ed.sample(D, x_T(), sig, solver="heun", callback=lambda info: cb.append((info["i"], float(info["sigma"]))))
    expect = [(i, st) for i in range(n - 1) for st in (0, 1)] + [(n - 1, 0)]
    assert [(a, b) for a, b, *_ in seen] == expect
    assert all(r[2] == n and r[3] == "cond" for r in seen)
    # stage 0 runs at σ_i, Heun's corrector (stage 1) at σ_{i+1}
    assert [r[4] for r in seen] == pytest.approx([float(sig[i + st]) for i, st in expect], rel=1e-6)
    assert cb == [(i, pytest.approx(float(sig[i]))) for i in range(n)]
    assert ed.current_context() is None


def test_cond_is_passed_through():
    got = []

    def D(x, s, cond=None):
        got.append(cond)
        return gauss(x, s)
    labels = torch.tensor([1, 2, 3, 4])
    ed.sample(D, x_T(), SIG, cond=labels)
    assert len(got) == 6 and all(g is labels for g in got)


# ---- seeds -----------------------------------------------------------------------------

def test_randn_per_sample_seeds():
    a = ed.sampling.randn((8, 2, 3), seed=3)
    b = ed.sampling.randn((4, 2, 3), seed=3)
    assert a.dtype == torch.float32 and a.shape == (8, 2, 3)
    assert torch.equal(a[:4], b)
    assert not torch.equal(ed.sampling.randn((4, 2, 3), seed=4), b)
    assert not torch.equal(a[0], a[1])
    assert torch.equal(ed.sampling.randn((2, 3), seeds=[5, 9])[1], ed.sampling.randn((1, 3), seeds=[9])[0])


@pytest.mark.parametrize("solver", ["ddpm", "euler-ancestral"])
def test_same_seed_same_sample_any_batch(solver):
    sig = T.karras(8, 0.05, 10.0)
    x8 = ed.sampling.randn((8, 3), seed=3, dtype=torch.float64) * sig[0]
    x4 = ed.sampling.randn((4, 3), seed=3, dtype=torch.float64) * sig[0]
    y8 = ed.sample(gauss, x8, sig, solver=solver, seed=3)
    y4 = ed.sample(gauss, x4, sig, solver=solver, seed=3)
    assert torch.equal(y8[:4], y4)
    assert not torch.equal(ed.sample(gauss, x4, sig, solver=solver, seed=4), y4)
    # stochastic: the noise matters (differs from the deterministic DDIM path)
    assert not torch.allclose(y4, ed.sample(gauss, x4, sig, solver="ddim"))
    # and the same call is reproducible
    assert torch.equal(ed.sample(gauss, x4, sig, solver=solver, seed=3), y4)


def test_ddpm_is_ddim_eta_one_and_ddim_eta_zero_is_euler():
    sig = T.karras(10, 0.05, 10.0)
    x = x_T(6)
    a = ed.sample(gauss, x, sig, solver="ddpm", seed=11)
    b = ed.sample(gauss, x, sig, solver="ddim", eta=1.0, seed=11)
    assert torch.equal(a, b)
    # eta = 0: the same update as Euler, up to float64 rounding of two algebraic forms
    torch.testing.assert_close(ed.sample(gauss, x, sig, solver="ddim", eta=0.0),
                               ed.sample(gauss, x, sig, solver="euler"), rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="eta"):
        ed.sample(gauss, x, sig, solver="ddim", eta=-0.5)


def test_ddpm_posterior_variance():
    """One DDIM eta=1 step from σ to σ' adds noise of variance σ'²(σ² - σ'²)/σ² (DDPM's posterior)."""
    s, s2 = 2.0, 1.0
    x = torch.zeros(20000, 1, dtype=torch.float64)
    seen = []
    out = ed.sample(lambda x, sig, c=None: torch.zeros_like(x), x, torch.tensor([s, s2, 0.0], dtype=torch.float64),
                    solver="ddpm", seed=1, callback=lambda i: seen.append(i["x"].clone()))
    var = float(seen[0].var())
    assert var == pytest.approx(s2 ** 2 * (s ** 2 - s2 ** 2) / s ** 2, rel=0.04)


# ---- convergence order on the exact Gaussian ODE ----------------------------------------

SIGMA_END, SIGMA_MAX = 0.5, 20.0


def ode_error(solver, n):
    """Error at σ_end of n - 1 ODE steps on karras(n, σ_end, σ_max) (the last step goes to 0)."""
    sig = T.karras(n, SIGMA_END, SIGMA_MAX)
    x = x_T(8, 2, SIGMA_MAX, seed=5)
    at_end = {}

    def cb(info):
        if info["i"] == n - 2:
            at_end["x"] = info["x"].clone()
    ed.sample(gauss, x, sig, solver=solver, callback=cb)
    return float((at_end["x"] - exact_flow(x, SIGMA_MAX, SIGMA_END)).abs().max())


@pytest.mark.parametrize("solver,order", [("euler", 1), ("ddim", 1), ("heun", 2), ("dpmpp-2m", 2)])
def test_convergence_order(solver, order):
    ns = [20, 40, 80, 160]
    errs = [ode_error(solver, n) for n in ns]
    assert all(e > 0 for e in errs)
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    slope = np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert abs(-slope - order) < 0.3, (solver, slope, errs)


def test_last_step_to_zero_returns_denoised():
    """Every ODE solver's last step to σ = 0 lands on the denoiser's prediction."""
    sig = torch.tensor([10.0, 2.0, 0.0], dtype=torch.float64)
    for solver in ("euler", "heun", "dpmpp-2m", "ddim"):
        seen = []
        out = ed.sample(gauss, x_T(), sig, solver=solver, callback=lambda i: seen.append(i))
        torch.testing.assert_close(out, seen[-1]["denoised"], rtol=1e-14, atol=1e-14)
