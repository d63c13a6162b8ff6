"""DPM-Solver, DPM-Solver++ and UniPC: exactness of each step on model outputs polynomial in λ
(the order of the formulas), measured convergence orders on a 2-D Gaussian mixture, identities
between solvers, NFE counts, option errors and agreement with diffusers' schedulers."""
import math

import numpy as np
import pytest
import torch

import effdiff as ed
from effdiff import timesteps as T
from effdiff.data import GaussianMixture
from effdiff.metrics import convergence_order
from effdiff.metrics.convergence import reference_solve
from effdiff.solvers.dpm_solver import exp_step, phi
from effdiff.solvers.unipc import unic_correct, unip_predict

GM = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], [0.5, 0.5])
SIG = T.karras(12, 0.05, 20.0)  # non-uniform in λ: variable-step formulas are exercised


def x_T(n=6, sigma=20.0, seed=0):
    return sigma * torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def trajectory(solver, x, sigmas=SIG, denoiser=GM, **opts):
    """States after every step (callback x) and the SampleResult."""
    states = []
    res = ed.sample(denoiser, x, sigmas, solver=solver, callback=lambda info: states.append(info["x"]),
                    return_info=True, **opts)
    return states, res


# ---- exactness on polynomial model outputs: the order of each formula ------------------

# coefficients c_k of q(λ) = Σ c_k λ^k, one column per coordinate
C = torch.tensor([[0.3, -1.0], [0.7, 0.2], [-0.4, 0.5], [0.15, -0.1], [0.05, 0.08]], dtype=torch.float64)
NODES, WEIGHTS = np.polynomial.legendre.leggauss(40)


def poly(lam, deg):
    """q(λ) = Σ_{k<=deg} c_k λ^k for a [B] tensor of λ: [B, 2]."""
    return sum(C[k] * lam[:, None] ** k for k in range(deg + 1))


def data_denoiser(deg):
    """D(x, σ) = q(-log σ), independent of x: the ODE dx/dλ = q(λ) - x integrates exactly."""
    return lambda x, sigma, cond=None: poly(-torch.log(sigma.double()), deg).expand_as(x)


def noise_denoiser(deg):
    """D(x, σ) = x - σ q(-log σ): the noise prediction ε = q(λ) is polynomial in λ."""
    return lambda x, sigma, cond=None: x - sigma.double()[:, None] * poly(-torch.log(sigma.double()), deg)


def exact_data(x, sigma, sigma_next, deg):
    """x' = σ'/σ x + ∫_0^h e^{-(h-u)} q(λ + u) du (Gauss-Legendre, exact to rounding)."""
    lam, h = -math.log(sigma), math.log(sigma) - math.log(sigma_next)
    u = torch.tensor((NODES + 1) * h / 2, dtype=torch.float64)
    w = torch.tensor(WEIGHTS * h / 2, dtype=torch.float64)
    integral = ((w * torch.exp(-(h - u)))[:, None] * poly(lam + u, deg)).sum(0)
    return x * (sigma_next / sigma) + integral


def exact_noise(x, sigma, sigma_next, deg):
    """x' = x - ∫_λ^λ' e^{-l} q(l) dl."""
    lam, h = -math.log(sigma), math.log(sigma) - math.log(sigma_next)
    u = torch.tensor((NODES + 1) * h / 2, dtype=torch.float64)
    w = torch.tensor(WEIGHTS * h / 2, dtype=torch.float64)
    return x - ((w * torch.exp(-(lam + u)))[:, None] * poly(lam + u, deg)).sum(0)


def test_phi_series_and_recursion_agree():
    for k in (1, 2, 3, 4):
        for z in (-3.0, -0.6, -0.4999, -1e-3, 1e-3, 0.4999, 0.6, 3.0):
            ref = sum(z ** j / math.factorial(j + k) for j in range(60))
            assert phi(k, z) == pytest.approx(ref, rel=1e-12)
    assert phi(1, -2.0) == pytest.approx(-math.expm1(-2.0) / 2.0, rel=1e-15)


@pytest.mark.parametrize("solver,prediction,deg", [
    ("dpmpp-3m", "data", 2), ("dpm-solver-3m", "noise", 2), ("dpmpp", "data", 0), ("dpm-solver-1", "noise", 0),
])
def test_multistep_steps_exact_for_polynomials(solver, prediction, deg):
    """With a full history, k-th order multistep is exact when m is a polynomial of degree k-1
    in λ: this pins the 3rd-order Δ2 = 2 (D1_0 - D1_1)/(r0 + r1) (module docstring)."""
    den = data_denoiser(deg) if prediction == "data" else noise_denoiser(deg)
    exact = exact_data if prediction == "data" else exact_noise
    x = x_T(3)
    states, _ = trajectory(solver, x, denoiser=den, lower_order_final=False, method="multistep")
    states = [x] + states
    for i in range(deg, len(SIG) - 2):  # steps with a full history, before the final jump to 0
        want = exact(states[i], float(SIG[i]), float(SIG[i + 1]), deg)
        assert torch.allclose(states[i + 1], want, rtol=1e-12, atol=1e-12), i
    # one degree more is not exact (the test can fail)
    den = data_denoiser(deg + 1) if prediction == "data" else noise_denoiser(deg + 1)
    states, _ = trajectory(solver, x, denoiser=den, lower_order_final=False, method="multistep")
    i = len(SIG) - 3
    assert not torch.allclose(states[i], exact(states[i - 1], float(SIG[i]), float(SIG[i + 1]), deg + 1), rtol=1e-8)


def test_reference_codes_3m_coefficient_is_half_the_taylor_term():
    """Halving Δ2, as the dpm-solver / diffusers / k-diffusion 3M codes effectively do, misses
    the exact step on a quadratic by a visible amount; the full Δ2 hits it."""
    s = [8.0, 5.0, 3.0, 2.0]
    lam = [-math.log(v) for v in s]
    q = [poly(torch.tensor([l], dtype=torch.float64), 2)[0] for l in lam]
    x = torch.tensor([0.1, -0.2], dtype=torch.float64)
    h = lam[3] - lam[2]
    r0, r1 = (lam[2] - lam[1]) / h, (lam[1] - lam[0]) / h
    d1_0, d1_1 = (q[2] - q[1]) / r0, (q[1] - q[0]) / r1
    d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))
    want = exact_data(x, s[2], s[3], 2)
    full = exp_step(x, s[2], s[3], [q[2], d1, (d1_0 - d1_1) * (2 / (r0 + r1))])
    half = exp_step(x, s[2], s[3], [q[2], d1, (d1_0 - d1_1) * (1 / (r0 + r1))])
    assert torch.allclose(full, want, rtol=1e-13, atol=1e-13)
    assert (half - want).abs().max() > 1e-3


def _history(deg, sig):
    lam = torch.tensor([-math.log(v) for v in sig], dtype=torch.float64)
    return [poly(lam[i:i + 1], deg)[0] for i in range(len(sig))]


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("p", [2, 3])
def test_unic_exact_for_degree_p(p, variant):
    """UniC-p (with the output at the new point) is exact for polynomials of degree p: order
    p + 1 (Zhao et al. 2023), after any predictor."""
    sig = [9.0, 6.0, 4.0, 2.5]  # last entry: the target σ'
    ms = _history(p, sig)
    x = torch.tensor([0.4, -1.1], dtype=torch.float64)
    want = exact_data(x, sig[-2], sig[-1], p)
    got = unic_correct(x, ms[-1 - p:-1], sig[-1 - p:-1], ms[-1], sig[-1], p, variant=variant)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    ms = _history(p + 1, sig)
    got = unic_correct(x, ms[-1 - p:-1], sig[-1 - p:-1], ms[-1], sig[-1], p, variant=variant)
    assert not torch.allclose(got, exact_data(x, sig[-2], sig[-1], p + 1), rtol=1e-6)


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_unip3_exact_for_quadratics(variant):
    sig = [9.0, 6.0, 4.0, 2.5]
    ms = _history(2, sig)
    x = torch.tensor([0.4, -1.1], dtype=torch.float64)
    got = unip_predict(x, ms[:3], sig[:3], sig[3], 3, variant=variant)
    assert torch.allclose(got, exact_data(x, sig[2], sig[3], 2), rtol=1e-12, atol=1e-12)


# ---- convergence orders on a 2-D Gaussian mixture ---------------------------------------

SMAX, SEND, STEPS = 80.0, 0.1, (16, 32, 64, 128)


@pytest.fixture(scope="module")
def start():
    x = x_T(16, SMAX, seed=3)
    return x, reference_solve(GM, x, SMAX, SEND)


# measured (this mixture, σ 80 -> 0.1, exponential grid, 16..128 steps):
# dpm-solver-1/2/3 1.02/2.09/3.04; dpmpp-2s 2.01, -3s 3.06; dpm-solver-2m 2.01, -3m 3.17;
# dpmpp-2m 2.05, -3m 3.21; unipc-1/2/3 2.02/3.06/4.19 (bh2), 2.12/3.14 (bh1 1/2),
# 3.21 (unipc-3 without corrector); dpmpp-2m-unic 3.06, dpmpp-3m-unic 4.19
@pytest.mark.parametrize("solver,opts,order", [
    ("dpm-solver-1", {}, 1), ("dpm-solver-2", {}, 2), ("dpm-solver-3", {}, 3),
    ("dpmpp-2s", {}, 2), ("dpmpp-3s", {}, 3),
    ("dpm-solver-2m", {}, 2), ("dpm-solver-3m", {}, 3), ("dpmpp-2m", {}, 2), ("dpmpp-3m", {}, 3),
    ("unipc-1", {}, 2), ("unipc-2", {}, 3), ("unipc-3", {}, 4),
    ("unipc-1", {"variant": "bh1"}, 2), ("unipc-2", {"variant": "bh1"}, 3),
    ("unipc-3", {"corrector": False}, 3), ("dpmpp-2m-unic", {}, 3), ("dpmpp-3m-unic", {}, 4),
])
def test_convergence_order(start, solver, opts, order):
    """UniPC-p with the corrector measures p + 1, as the paper claims; without it, p. The
    unipc family lowers the order of its last steps for every n, so that is switched off."""
    x, ref = start
    if solver.startswith("unipc") or solver.endswith("unic"):
        opts = {**opts, "lower_order_final": False}
    p, errs = convergence_order(GM, x, solver, steps=STEPS, sigma_max=SMAX, sigma_end=SEND, reference=ref, **opts)
    assert abs(p - order) < 0.3, (p, errs)


def test_lower_order_warmup_caps_multistep_order():
    """Honest limit: 3rd-order multistep starts with 1st- and 2nd-order steps (as in the papers'
    code), so as h -> 0 its global error is 2nd order. From σ_max = 80 this is invisible (the
    ODE is nearly linear there; test above), from σ_max = 5 it shows; singlestep keeps 3."""
    x = x_T(16, 5.0, seed=3)
    ref = reference_solve(GM, x, 5.0, SEND)
    kw = dict(steps=(128, 256, 512), sigma_max=5.0, sigma_end=SEND, reference=ref)
    assert abs(convergence_order(GM, x, "dpmpp-3m", **kw)[0] - 2) < 0.2        # measured 2.04
    assert abs(convergence_order(GM, x, "dpm-solver-3m", **kw)[0] - 2) < 0.2   # measured 2.03
    assert abs(convergence_order(GM, x, "dpm-solver-3", **kw)[0] - 3) < 0.2    # measured 3.01


# ---- identities ----------------------------------------------------------------------------

def _same(a, b, tol=1e-12):
    return all(torch.allclose(u, v, rtol=tol, atol=tol) for u, v in zip(a, b)) and len(a) == len(b)


def test_first_order_solvers_are_ddim():
    x = x_T()
    ddim, _ = trajectory("ddim", x)
    for solver, opts in [("dpm-solver-1", {}), ("dpm-solver", {"order": 1, "method": "multistep"}),
                         ("dpmpp", {"order": 1}), ("dpmpp", {"order": 1, "method": "singlestep"}),
                         ("unipc-1", {"corrector": False}), ("unipc-1", {"corrector": False, "variant": "bh1"})]:
        assert _same(trajectory(solver, x, **opts)[0], ddim), (solver, opts)
    # DPM-Solver++(2M)'s first step is the first-order step
    assert torch.allclose(trajectory("dpmpp-2m", x)[0][0], ddim[0], rtol=1e-12, atol=1e-12)


def test_dpmpp_2s_is_k_diffusion_2s_without_noise():
    """DPM-Solver++(2S), r = 1/2: x' = σ'/σ x + (1 - e^{-h}) D(u, σ_mid), u the first-order step
    to σ_mid = sqrt(σ σ') (k-diffusion's dpmpp_2s_ancestral with eta=0), by hand."""
    x, s, s_next = x_T(), float(SIG[2]), float(SIG[3])
    h = math.log(s / s_next)
    mid = math.sqrt(s * s_next)
    d = GM(x, torch.full((6,), s, dtype=torch.float64))
    u = (mid / s) * x - math.expm1(-h / 2) * d
    want = (s_next / s) * x - math.expm1(-h) * GM(u, torch.full((6,), mid, dtype=torch.float64))
    got = trajectory("dpmpp-2s", x, torch.tensor([s, s_next, 0.0], dtype=torch.float64))[0][0]
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [10, 20])
def test_multistep_identities(n):
    sig, x = T.karras(n, 0.05, 20.0), x_T()
    dpmpp_2m = trajectory("dpmpp-2m", x, sig)[0]
    assert _same(trajectory("dpmpp", x, sig, order=2)[0], dpmpp_2m)
    assert _same(trajectory("unipc-2", x, sig, corrector=False)[0], dpmpp_2m)  # UniP-2 (bh2) is 2M
    # UniP-3 solves the order conditions; our 3M (full Δ2) is the same extrapolation
    off = {"lower_order_final": False}
    unip3 = trajectory("unipc-3", x, sig, corrector=False, **off)[0]
    assert _same(unip3, trajectory("dpmpp-3m", x, sig, **off)[0], 1e-10)
    # the dpmpp predictors + UniC reuse the same corrector: equal to UniPC-2/3 (bh2)
    assert _same(trajectory("dpmpp-2m-unic", x, sig)[0], trajectory("unipc-2", x, sig)[0])
    assert _same(trajectory("dpmpp-3m-unic", x, sig)[0], trajectory("unipc-3", x, sig)[0], 1e-10)
    assert not _same(trajectory("unipc-2", x, sig, variant="bh1")[0], trajectory("unipc-2", x, sig)[0], 1e-6)


def test_corrector_changes_states_but_not_the_cost():
    x = x_T()
    with_c, r1 = trajectory("unipc-3", x)
    without, r2 = trajectory("unipc-3", x, corrector=False)
    assert r1.nfe == r2.nfe == len(SIG) - 1
    assert torch.allclose(with_c[0], without[0])          # nothing to correct before step 1
    assert not torch.allclose(with_c[2], without[2], rtol=1e-6)


def test_lower_order_final():
    x = x_T()
    for n, differs in [(10, True), (20, False)]:  # DPM-Solver family: only below 15 steps
        sig = T.karras(n, 0.05, 20.0)
        a = trajectory("dpmpp-3m", x, sig)[0][-2]
        b = trajectory("dpmpp-3m", x, sig, lower_order_final=False)[0][-2]
        assert (not torch.allclose(a, b, rtol=1e-8)) == differs, n
    sig = T.karras(20, 0.05, 20.0)  # UniPC: at any n, as its reference code
    assert not torch.allclose(trajectory("unipc-3", x, sig)[0][-2],
                              trajectory("unipc-3", x, sig, lower_order_final=False)[0][-2], rtol=1e-8)


@pytest.mark.parametrize("solver", ["dpm-solver-3", "dpmpp-2s", "dpmpp-3m", "dpm-solver-2m", "unipc", "dpmpp-2m-unic"])
def test_final_step_returns_data_prediction(solver):
    infos = []
    out = ed.sample(GM, x_T(), SIG, solver=solver, callback=infos.append)
    assert torch.equal(out, infos[-1]["denoised"]) and torch.equal(out, infos[-1]["x"])


# ---- cost, dtype, options ------------------------------------------------------------------

@pytest.mark.parametrize("solver,per_step", [
    ("dpm-solver-1", 1), ("dpm-solver-2", 2), ("dpm-solver-3", 3), ("dpmpp-2s", 2), ("dpmpp-3s", 3),
    ("dpm-solver-2m", 1), ("dpm-solver-3m", 1), ("dpmpp-3m", 1), ("unipc", 1), ("unipc-1", 1), ("dpmpp-2m-unic", 1),
])
def test_nfe_and_callbacks(solver, per_step):
    """Singlestep order k: k evaluations per step, 1 for the final step to σ=0."""
    n = len(SIG) - 1
    states, res = trajectory(solver, x_T())
    assert res.nfe == per_step * (n - 1) + 1
    assert res.steps == n and len(states) == n


def test_float32_follows_float64():
    x = x_T()
    for solver in ("dpm-solver-3", "dpmpp-3m", "unipc"):
        lo = ed.sample(GM, x.float(), SIG, solver=solver)
        hi = ed.sample(GM, x, SIG, solver=solver)
        assert lo.dtype == torch.float32 and torch.allclose(lo.double(), hi, atol=1e-4)


@pytest.mark.parametrize("solver,opts,match", [
    ("dpm-solver", {"order": 4}, "order"), ("dpm-solver", {"order": True}, "order"),
    ("dpm-solver", {"method": "adaptive"}, "method"), ("dpmpp", {"prediction": "v"}, "prediction"),
    ("unipc", {"order": 0}, "order"), ("unipc", {"variant": "bh3"}, "variant"),
    ("unipc", {"predictor": "heun"}, "predictor"), ("unipc", {"corrector": "yes"}, "corrector"),
])
def test_bad_options(solver, opts, match):
    with pytest.raises(ValueError, match=match):
        ed.sample(GM, x_T(), SIG, solver=solver, **opts)


def test_registered_names():
    assert {"dpm-solver", "dpm-solver-1", "dpm-solver-2", "dpm-solver-3", "dpm-solver-2m", "dpm-solver-3m",
            "dpmpp", "dpmpp-2s", "dpmpp-3s", "dpmpp-3m", "unipc", "unipc-1", "unipc-2", "unipc-3",
            "dpmpp-2m-unic", "dpmpp-3m-unic"} <= set(ed.solvers.names())


# ---- peer agreement: diffusers on a discrete VP process, same timesteps, float64 ---------

def _diffusers_states(sched, n, x_ve, process):
    """Run a diffusers scheduler with x0-prediction from the exact denoiser; states in VE form."""
    sched.set_timesteps(n)
    sig = torch.cat([process.t_to_sigma(sched.timesteps.double()), torch.zeros(1, dtype=torch.float64)])
    sched.sigmas = sig.clone()  # the same σ's, in float64
    x, states = x_ve / torch.sqrt(1 + sig[0] ** 2), []
    for i, t in enumerate(sched.timesteps):
        d = GM(x * torch.sqrt(1 + sig[i] ** 2), sig[i].expand(x.shape[0]))
        x = sched.step(d, t, x).prev_sample
        states.append(x * torch.sqrt(1 + sig[i + 1] ** 2))
    return states, sig


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("n", [10, 20])
def test_agrees_with_diffusers(n):
    diffusers = pytest.importorskip("diffusers")
    vp, x = ed.process.VP("linear", discrete=True), x_T(8, 14.0)

    def rel(a, b):
        return float((a - b).norm() / b.norm())

    # DPM-Solver(++) 2M; diffusers casts the state to float32, hence ~1e-7
    for alg, solver in [("dpmsolver++", "dpmpp-2m"), ("dpmsolver", "dpm-solver-2m")]:
        sched = diffusers.DPMSolverMultistepScheduler(solver_order=2, algorithm_type=alg, prediction_type="sample",
                                                      final_sigmas_type="sigma_min")
        theirs, sig = _diffusers_states(sched, n, x, vp)
        ours = trajectory(solver, x, sig)[0]
        assert max(rel(a, b) for a, b in zip(ours[:-1], theirs[:-1])) < 1e-4, alg
    for order in (1, 2, 3):
        for variant in ("bh1", "bh2"):
            sched = diffusers.UniPCMultistepScheduler(solver_order=order, solver_type=variant, prediction_type="sample",
                                                      final_sigmas_type="zero")
            theirs, sig = _diffusers_states(sched, n, x, vp)
            ours = trajectory("unipc", x, sig, order=order, variant=variant)[0]
            # all states but the final one: diffusers' bh1 step to σ=0 returns NaN (B(h) = -inf)
            assert max(rel(a, b) for a, b in zip(ours[:-1], theirs[:-1])) < 1e-4, (order, variant)
            if variant == "bh2":
                assert rel(ours[-1], theirs[-1]) < 1e-4
