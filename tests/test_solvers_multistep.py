"""Linear multistep solvers (lms, pndm, ipndm, deis): convergence order on a 2-D Gaussian
mixture (exact denoiser, DOP853 reference), exactness on polynomial ε, equivalences, NFE."""
import math

import numpy as np
import pytest
import torch

import effdiff as ed
from effdiff import timesteps as T
from effdiff.data import GaussianMixture
from effdiff.metrics import convergence_order
from effdiff.metrics.convergence import reference_solve, solve_to
from effdiff.solvers.multistep import lagrange_integrals

GM = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.5, -0.5]], [0.5, 0.8])
STEPS = (20, 40, 80, 160)
STEPS_80 = (30, 60, 120, 240)   # from σ_max = 80, where the start-up error is small (below)


def x_T(sigma, b=8, seed=0):
    return sigma * torch.randn(b, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def local_orders(errs):
    return [math.log2(a / b) for a, b in zip(errs, errs[1:])]


# ---- convergence order ------------------------------------------------------------------
# A k-step method started with orders 1, 2, .. carries an O(h²) start-up error ∝ dε/dσ at σ_max.
# From σ_max = 80 that term stays well below the k-th order one over 30..240 steps (checked
# against an exact start-up while tuning: ~6 % of lms-4's error at 160 steps), so these are the
# orders of the multistep formulas themselves; test_warm_start_limits_order shows the flip side.

@pytest.fixture(scope="module")
def ref80():
    x = x_T(80.0)
    return x, reference_solve(GM.denoise, x, 80.0, 0.5)


@pytest.mark.parametrize("solver,opts,order", [
    ("lms", dict(order=2), 2), ("lms", dict(order=3), 3), ("lms", {}, 4),
    ("deis-1", {}, 1), ("deis-2", {}, 2), ("deis-3", {}, 3), ("deis", {}, 3),
    ("deis-2", dict(variable="log-sigma"), 2), ("deis-3", dict(variable="log-sigma"), 3),
    # fixed equal-step weights on a non-uniform (exponential) grid: 2nd order whatever `order`
    ("ipndm", {}, 2), ("ipndm", dict(order=3), 2), ("ipndm", dict(order=2), 2),
])
def test_convergence_order_exponential(ref80, solver, opts, order):
    x, ref = ref80
    p, errs = convergence_order(GM.denoise, x, solver, steps=STEPS_80, sigma_max=80.0, sigma_end=0.5,
                                schedule="exponential", reference=ref, **opts)
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert abs(p - order) < 0.3, (solver, opts, p, errs)


def test_warm_start_limits_order():
    """From σ_max = 10 the Euler first step's O(h²) error takes over lms-4 by 160 steps."""
    x = x_T(10.0)
    p, errs = convergence_order(GM.denoise, x, "lms", steps=STEPS, sigma_max=10.0, sigma_end=0.5)
    loc = local_orders(errs)
    assert loc[0] > 3.0 and loc[-1] < 2.5, loc


def uniform_grid(n, hi, lo):
    """n σ's equally spaced from hi to lo, then 0 (σ-uniform: PNDM's equal-step setting)."""
    return torch.cat([torch.linspace(hi, lo, n, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])


@pytest.mark.parametrize("solver,opts,order", [("pndm", {}, 4), ("ipndm", {}, 2),
                                               ("pndm", dict(order=2, warmup="pie"), 2)])
def test_convergence_order_uniform(solver, opts, order):
    """On a σ-uniform grid where dε/dσ is large (σ 3 → 1): PNDM's pseudo Runge–Kutta warm
    start keeps 4th order, iPNDM's Euler warm start drops it to 2 (why PNDM pays 9 NFE)."""
    x = x_T(3.0)
    ref = reference_solve(GM.denoise, x, 3.0, 1.0)
    errs = [float((solve_to(GM.denoise, x, uniform_grid(n, 3.0, 1.0), solver, **opts) - ref).pow(2).mean().sqrt())
            for n in STEPS]
    p = -np.polyfit(np.log(STEPS), np.log(errs), 1)[0]
    assert abs(p - order) < 0.3, (solver, p, errs)


# ---- equivalences -----------------------------------------------------------------------

def run(solver, sigmas, x=None, **opts):
    x = x_T(float(sigmas[0])) if x is None else x
    return ed.sample(GM.denoise, x, sigmas, solver=solver, return_info=True, **opts)


def test_deis_1_is_ddim():
    sig = T.karras(12, 0.02, 80.0)
    ddim = run("ddim", sig).x
    for variable in ("sigma", "log-sigma"):
        torch.testing.assert_close(run("deis-1", sig, variable=variable).x, ddim, rtol=0, atol=1e-12)
    torch.testing.assert_close(run("lms", sig, order=1).x, ddim, rtol=0, atol=1e-12)
    torch.testing.assert_close(run("ipndm", sig, order=1).x, ddim, rtol=0, atol=1e-12)


@pytest.mark.parametrize("order", [2, 3])
def test_deis_in_sigma_is_lms(order):
    """In VE form ρAB-DEIS (ε polynomial in ρ = σ) is k-diffusion's LMS, the same formula."""
    sig = T.karras(15, 0.02, 80.0)
    torch.testing.assert_close(run(f"deis-{order}", sig).x, run("lms", sig, order=order).x, rtol=0, atol=1e-12)
    assert (run(f"deis-{order}", sig, variable="log-sigma").x - run("lms", sig, order=order).x).abs().max() > 1e-4


def test_ipndm_is_lms_on_uniform_grid():
    """Equal σ steps: the variable-step weights reduce to the fixed Adams–Bashforth ones."""
    sig = uniform_grid(12, 10.0, 0.5)
    for order in (2, 3, 4):
        torch.testing.assert_close(run("ipndm", sig, order=order).x, run("lms", sig, order=order).x,
                                   rtol=0, atol=1e-12)
    karras = T.karras(12, 0.1, 10.0)
    assert (run("ipndm", karras).x - run("lms", karras).x).abs().max() > 1e-4


def test_named_orders():
    sig = T.karras(10, 0.05, 20.0)
    for k in (1, 2, 3):
        torch.testing.assert_close(run(f"deis-{k}", sig).x, run("deis", sig, order=k).x, rtol=0, atol=0)
    torch.testing.assert_close(run("deis", sig).x, run("deis-3", sig).x, rtol=0, atol=0)
    torch.testing.assert_close(run("lms", sig).x, run("lms", sig, order=4).x, rtol=0, atol=0)


# ---- exactness on polynomial ε ------------------------------------------------------------

def poly_eps_denoiser(eps_fn):
    """A denoiser whose ε = (x - D)/σ is eps_fn(σ) [B, 2], independent of x."""
    def D(x, sigma, cond=None):
        s = sigma.reshape(-1, 1)
        return x - s * eps_fn(s)
    return D


COEF = torch.tensor([[0.7, -0.2], [0.3, 0.5], [-0.05, 0.04], [0.002, -0.003]], dtype=torch.float64)


def eps_poly(s, degree):                     # Σ_m c_m σ^m, degree <= 3
    return sum(COEF[m] * s ** m for m in range(degree + 1))


def int_poly(a, b, degree):                  # ∫_a^b ε dσ
    return sum(COEF[m] * (b ** (m + 1) - a ** (m + 1)) / (m + 1) for m in range(degree + 1))


def f32_exact(sigmas):
    """σ's representable in float32: ed.sample hands a float σ to the denoiser through
    as_batch_sigma, whose torch.as_tensor(float) rounds it to float32 (see the report)."""
    return sigmas.float().double()


def steps_taken(solver, den, sigmas, **opts):
    xs = [x_T(float(sigmas[0]), b=2)]
    ed.sample(den, xs[0], sigmas, solver=solver, callback=lambda info: xs.append(info["x"]), **opts)
    return xs


@pytest.mark.parametrize("solver,order", [("lms", 2), ("lms", 3), ("lms", 4), ("deis-2", 2), ("deis-3", 3)])
def test_exact_for_polynomial_eps_in_sigma(solver, order):
    """Once the history holds k points, a k-step σ-polynomial method integrates ε of degree
    k - 1 exactly on any grid; the warm-up steps (lower order) do not."""
    sig = f32_exact(T.karras(9, 0.2, 10.0))
    opts = dict(order=order) if solver == "lms" else {}
    xs = steps_taken(solver, poly_eps_denoiser(lambda s: eps_poly(s, order - 1)), sig, **opts)
    for i in range(len(sig) - 2):
        a, b = float(sig[i]), float(sig[i + 1])
        err = float((xs[i + 1] - xs[i] - int_poly(a, b, order - 1)).abs().max())
        if i >= order - 1:
            assert err < 1e-11, (i, err)
        else:
            assert err > 1e-6, (i, err)


def test_exact_for_polynomial_eps_in_log_sigma():
    """deis variable='log-sigma': ε = a + b u + c u², u = log σ, integrated against dσ = e^u du."""
    c = COEF[:3]
    eps_fn = lambda s: c[0] + c[1] * s.log() + c[2] * s.log() ** 2
    prim = lambda u: math.exp(u) * (c[0] + c[1] * (u - 1) + c[2] * (u * u - 2 * u + 2))
    sig = f32_exact(T.karras(9, 0.05, 40.0))
    xs = steps_taken("deis-3", poly_eps_denoiser(eps_fn), sig, variable="log-sigma")
    for i in range(2, len(sig) - 2):
        exact = prim(math.log(float(sig[i + 1]))) - prim(math.log(float(sig[i])))
        assert float((xs[i + 1] - xs[i] - exact).abs().max()) < 1e-11, i


def test_pndm_exact_for_cubic_eps_on_uniform_grid():
    """PRK on x-independent ε is Simpson's rule and equal-step AB4 is exact for cubics: the
    whole PNDM trajectory is exact (iPNDM's Euler first step is not)."""
    sig = uniform_grid(9, 10.0, 1.0)
    den = poly_eps_denoiser(lambda s: eps_poly(s, 3))
    xs = steps_taken("pndm", den, sig)
    exact = xs[0] + int_poly(10.0, 1.0, 3)
    assert float((xs[-2] - exact).abs().max()) < 1e-10
    assert float((steps_taken("ipndm", den, sig)[-2] - exact).abs().max()) > 1e-3


def test_lagrange_integrals():
    nodes, a, b = [2.0, 3.5, 5.0, 7.0], 2.0, 0.8
    w = lagrange_integrals(nodes, a, b)
    for m in range(4):                       # Σ_j w_j t_j^m = ∫_a^b t^m dt for degree < 4
        assert sum(wj * t ** m for wj, t in zip(w, nodes)) == pytest.approx((b ** (m + 1) - a ** (m + 1)) / (m + 1), rel=1e-13)
    assert lagrange_integrals([2.0], a, b) == pytest.approx([b - a], rel=1e-15)
    assert lagrange_integrals([2.0, 3.0], 2.0, 1.0) == pytest.approx([-1.5, 0.5], rel=1e-14)   # AB2


# ---- NFE, final step, options --------------------------------------------------------------

@pytest.mark.parametrize("solver,opts,rule", [
    ("lms", {}, lambda n: n), ("ipndm", {}, lambda n: n), ("deis", {}, lambda n: n),
    ("deis-1", {}, lambda n: n), ("deis-2", dict(variable="log-sigma"), lambda n: n),
    ("pndm", {}, lambda n: n + 3 * min(3, n - 1)),
    ("pndm", dict(order=2), lambda n: n + 3 * min(1, n - 1)),
    ("pndm", dict(warmup="pie"), lambda n: n + min(1, n - 1)),
])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 10])
def test_nfe(solver, opts, rule, n):
    res = run(solver, T.karras(n, 0.1, 10.0), **opts) if n > 1 else run(solver, torch.tensor([10.0, 0.0], dtype=torch.float64), **opts)
    assert (res.nfe, res.steps) == (rule(n), n)


@pytest.mark.parametrize("solver", ["lms", "pndm", "ipndm", "deis", "deis-1", "deis-2", "deis-3"])
def test_last_step_returns_denoised(solver):
    seen = []
    out = ed.sample(GM.denoise, x_T(10.0), T.karras(6, 0.1, 10.0), solver=solver, callback=seen.append)
    assert len(seen) == 6 and [int(s["i"]) for s in seen] == list(range(6))
    torch.testing.assert_close(out, seen[-1]["denoised"], rtol=0, atol=0)


@pytest.mark.parametrize("solver,opts,match", [
    ("lms", dict(order=5), "order"), ("lms", dict(order=0), "order"), ("lms", dict(order=2.0), "order"),
    ("ipndm", dict(order=5), "order"), ("pndm", dict(warmup="rk45"), "warmup"),
    ("deis", dict(order=4), "order"), ("deis-2", dict(variable="t"), "variable"),
])
def test_bad_options(solver, opts, match):
    with pytest.raises(ValueError, match=match):
        run(solver, T.karras(5, 0.1, 10.0), **opts)
