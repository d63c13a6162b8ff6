"""SDE, hybrid and adaptive solvers: marginals on exact Gaussian data, seeded noise, reductions
to deterministic solvers, convergence orders, restart as a combinator, adaptive tolerances."""
import math

import pytest
import torch

import effdiff as ed
from effdiff import timesteps as T
from effdiff.data import GaussianMixture
from effdiff.metrics import convergence_order, reference_solve

MU, S = torch.tensor([0.3, -0.5], dtype=torch.float64), 0.5
N, SMAX, SMIN = 20_000, 20.0, 0.02
GM = GaussianMixture([0.3, 0.7], [[1.0, -0.5], [-1.0, 0.8]], [0.3, 0.5])   # non-linear D


def gauss(x, sigma, cond=None):
    """Exact denoiser of x0 ~ N(MU, S² I)."""
    s = sigma.reshape(-1, 1)
    return MU + S ** 2 / (S ** 2 + s ** 2) * (x - MU)


@pytest.fixture(scope="module")
def x_gauss():
    """20k exact draws of the σ_max marginal N(MU, (S² + σ_max²) I)."""
    g = torch.Generator().manual_seed(0)
    return MU + math.sqrt(S ** 2 + SMAX ** 2) * torch.randn(N, 2, dtype=torch.float64, generator=g)


def test_registered():
    assert {"euler-maruyama", "dpmpp-2m-sde", "dpmpp-3m-sde", "sa-solver", "restart",
            "dpm-solver-12", "dpm-solver-23", "adaptive-sde"} <= set(ed.solvers.names())


# ---- distributions on Gaussian data --------------------------------------------------------

@pytest.mark.parametrize("solver,n,opts", [
    ("euler-maruyama", 100, {}),
    ("dpmpp-2m-sde", 40, {}),
    ("dpmpp-2m-sde", 40, {"solver_type": "heun"}),
    ("dpmpp-3m-sde", 40, {}),
    ("sa-solver", 40, {}),
    ("sa-solver", 40, {"tau": 1.0}),
    ("restart", 20, {"restarts": [(0.3, 2.0, 2, 4)]}),
    ("adaptive-sde", 2, {}),
])
def test_final_distribution_matches_data(x_gauss, solver, n, opts):
    torch.manual_seed(1)
    x = ed.sample(gauss, x_gauss, T.karras(n, SMIN, SMAX), solver=solver, **opts)
    std = S ** 2 / math.sqrt(S ** 2 + SMIN ** 2)   # the final step returns D(x, σ_min)
    assert (x.mean(0) - MU).abs().max() < 0.02
    assert (x.std(0) - std).abs().max() < 0.02


def test_euler_maruyama_weak_convergence():
    """On 1-D Gaussian data EM's sample std tracks the exact marginal sqrt(S² + σ²) along the
    whole path, with an error that falls like 1/n (weak order 1)."""
    mu = MU[:1]
    den = lambda x, sigma, cond=None: mu + S ** 2 / (S ** 2 + sigma.reshape(-1, 1) ** 2) * (x - mu)
    x = mu + math.sqrt(S ** 2 + SMAX ** 2) * torch.randn(N, 1, dtype=torch.float64,
                                                          generator=torch.Generator().manual_seed(0))
    worst = {}
    for n in (50, 200):
        sig, stds = T.karras(n, SMIN, SMAX), {}
        torch.manual_seed(2)
        ed.sample(den, x, sig, solver="euler-maruyama",
                  callback=lambda d: stds.__setitem__(int(d["i"]) + 1, float(d["x"].std())))
        worst[n] = max(abs(stds[j] / math.sqrt(S ** 2 + float(sig[j]) ** 2) - 1) for j in range(1, n))
    assert worst[200] < 0.035, worst
    assert 2.5 < worst[50] / worst[200] < 8, worst      # ~4 for weak order 1


# ---- seeds ---------------------------------------------------------------------------------

SEEDED = [("euler-maruyama", {}), ("dpmpp-2m-sde", {}), ("dpmpp-3m-sde", {"eta": 0.5}),
          ("sa-solver", {"tau": 1.0}), ("restart", {"restarts": [(0.5, 3.0, 1, 3)]})]


@pytest.mark.parametrize("solver,opts", SEEDED)
def test_same_seed_same_sample_at_any_batch_size(solver, opts):
    sig = T.karras(8, 0.05, 10.0)
    x4 = ed.sampling.randn((4, 2), seed=3, dtype=torch.float64) * 10.0
    x2 = ed.sampling.randn((2, 2), seed=3, dtype=torch.float64) * 10.0
    a = ed.sample(GM, x4, sig, solver=solver, seed=5, **opts)
    b = ed.sample(GM, x2, sig, solver=solver, seed=5, **opts)
    c = ed.sample(GM, x2, sig, solver=solver, seed=6, **opts)
    torch.testing.assert_close(a[:2], b, rtol=0, atol=1e-12)
    assert (b - c).abs().max() > 1e-3          # the noise matters


# ---- reductions and orders -----------------------------------------------------------------

def x_T(b=6, sigma=20.0):
    return sigma * torch.randn(b, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def ref():
    return reference_solve(GM, x_T(), 20.0, 0.1)


def test_dpmpp_2m_sde_eta0_is_dpmpp_2m():
    sig = T.karras(10, 0.05, 20.0)
    a = ed.sample(GM, x_T(), sig, solver="dpmpp-2m-sde", eta=0.0)
    b = ed.sample(GM, x_T(), sig, solver="dpmpp-2m")
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_sa_predictor2_is_dpmpp_2m_sde_heun(eta):
    """SA-Solver's 2-step Adams predictor with τ² = η is DPM-Solver++(2M) SDE, 'heun' type."""
    sig = T.karras(10, 0.05, 20.0)
    a = ed.sample(GM, x_T(), sig, solver="sa-solver", tau=math.sqrt(eta), predictor_order=2,
                  corrector_order=0, seed=1)
    b = ed.sample(GM, x_T(), sig, solver="dpmpp-2m-sde", eta=eta, solver_type="heun", seed=1)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_dpmpp_3m_sde_is_sa_predictor3(eta):
    """3M SDE's φ-form and the 3-step stochastic Adams predictor integrate the same quadratic."""
    sig = T.karras(10, 0.05, 20.0)
    a = ed.sample(GM, x_T(), sig, solver="sa-solver", tau=math.sqrt(eta), predictor_order=3,
                  corrector_order=0, seed=1)
    b = ed.sample(GM, x_T(), sig, solver="dpmpp-3m-sde", eta=eta, seed=1)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("p,c,order", [(1, 0, 1), (2, 0, 2), (3, 0, 3), (2, 3, 3)])
def test_sa_solver_tau0_order(ref, p, c, order):
    got, errs = convergence_order(GM, x_T(), "sa-solver", steps=(16, 32, 64, 128), reference=ref,
                                  tau=0.0, predictor_order=p, corrector_order=c)
    assert abs(got - order) < 0.3, (got, errs)


def test_sa_corrector_improves_predictor(ref):
    _, e_p = convergence_order(GM, x_T(), "sa-solver", steps=(16, 32), reference=ref, tau=0.0,
                               predictor_order=3, corrector_order=0)
    _, e_pc = convergence_order(GM, x_T(), "sa-solver", steps=(16, 32), reference=ref, tau=0.0,
                                predictor_order=3, corrector_order=3)
    assert all(b < a / 2 for a, b in zip(e_p, e_pc))


@pytest.mark.parametrize("solver,opts,order", [
    ("dpmpp-2m-sde", {"eta": 0.0}, 2),
    ("dpmpp-2m-sde", {"eta": 0.0, "solver_type": "heun"}, 2),
    ("dpmpp-3m-sde", {"eta": 0.0}, 3),   # k-diffusion's φ3 d2 coefficient would measure 2
])
def test_dpmpp_sde_eta0_order(ref, solver, opts, order):
    got, errs = convergence_order(GM, x_T(), solver, steps=(16, 32, 64, 128), reference=ref, **opts)
    assert abs(got - order) < 0.3, (got, errs)


def test_sa_solver_tau_callable_and_interval():
    """tau=None is τ=1 on tau_interval: an interval covering nothing is the τ=0 ODE solver."""
    sig = T.karras(10, 0.05, 20.0)
    ode = ed.sample(GM, x_T(), sig, solver="sa-solver", tau=0.0, seed=1)
    a = ed.sample(GM, x_T(), sig, solver="sa-solver", tau_interval=(100.0, 200.0), seed=1)
    b = ed.sample(GM, x_T(), sig, solver="sa-solver", tau=lambda s: 0.0, seed=1)
    c = ed.sample(GM, x_T(), sig, solver="sa-solver", seed=1)
    torch.testing.assert_close(a, ode, rtol=0, atol=0)
    torch.testing.assert_close(b, ode, rtol=0, atol=0)
    assert (c - ode).abs().max() > 1e-3


# ---- restart ------------------------------------------------------------------------------

@pytest.mark.parametrize("inner", ["heun", "dpmpp-2m", "euler"])
def test_restart_k0_is_inner(inner):
    sig = T.karras(12, 0.05, 20.0)
    a = ed.sample(GM, x_T(), sig, solver="restart", inner=inner, restarts=[(0.5, 3.0, 0, 5)],
                  return_info=True)
    b = ed.sample(GM, x_T(), sig, solver=inner, return_info=True)
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=0)
    assert (a.nfe, a.steps) == (b.nfe, b.steps)


def test_restart_nfe_and_callbacks():
    sig = T.karras(12, 0.05, 20.0)
    seen = []
    r = ed.sample(GM, x_T(), sig, solver="restart", inner="heun", restarts=[(0.5, 3.0, 2, 3), (0.1, 1.0, 1, 2)],
                  seed=0, return_info=True, callback=lambda d: seen.append(int(d["i"])))
    # heun: 2n-1 on the main grid; each restart re-solve of n steps ends at σ_min > 0: 2n
    assert r.nfe == (2 * 12 - 1) + 2 * (2 * 3) + 1 * (2 * 2)
    assert seen == list(range(12)) and r.steps == 12


def test_restart_inner_opts_and_errors():
    sig = T.karras(8, 0.05, 20.0)
    a = ed.sample(GM, x_T(), sig, solver="restart", inner="dpmpp-2m-sde", eta=0.0)
    b = ed.sample(GM, x_T(), sig, solver="dpmpp-2m")
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    for bad in ([(0.5, 0.4, 1, 2)], [(0.5, 3.0, -1, 2)], [(0.5, 3.0, 1, 0)], [(0.5, 3.0, 1)]):
        with pytest.raises(ValueError):
            ed.sample(GM, x_T(), sig, solver="restart", restarts=bad)
    s = float(sig[4])    # σ_min snaps to s, which is above this σ_max
    with pytest.raises(ValueError, match="exceed"):
        ed.sample(GM, x_T(), sig, solver="restart", restarts=[(0.9 * s, 0.95 * s, 1, 2)])


# ---- adaptive step size ---------------------------------------------------------------------

def _run_adaptive(solver, **opts):
    states, infos = [], []
    r = ed.sample(GM, x_T(), T.karras(10, 0.1, 20.0), solver=solver, return_info=True,
                  callback=lambda d: (states.append(d["x"]), infos.append(d)), **opts)
    return r, states, infos


@pytest.mark.parametrize("solver", ["dpm-solver-12", "dpm-solver-23"])
def test_adaptive_ode_reaches_reference_within_tolerance(ref, solver):
    nfes = []
    for tol in (1e-2, 1e-3, 1e-4):
        r, states, infos = _run_adaptive(solver, atol=tol, rtol=tol)
        assert (states[-2] - ref).abs().max() < 5 * tol          # state at σ_min = sigmas[-2]
        assert [d["i"] for d in infos] == list(range(len(infos)))
        assert infos[-1]["accepted"] == len(infos) - 1 and "rejected" in infos[-1]
        assert infos[-2]["sigma_next"] == pytest.approx(0.1, rel=1e-12)
        nfes.append(r.nfe)
    assert nfes[0] < nfes[1] < nfes[2]


def test_adaptive_data_prediction(ref):
    r, states, _ = _run_adaptive("dpm-solver-23", atol=1e-4, rtol=1e-4, prediction="data")
    assert (states[-2] - ref).abs().max() < 5e-4


def test_adaptive_pid_and_order():
    r12, s12, _ = _run_adaptive("dpm-solver-12", atol=1e-4, rtol=1e-4)
    r23, s23, _ = _run_adaptive("dpm-solver-23", atol=1e-4, rtol=1e-4)
    rpid, spid, _ = _run_adaptive("dpm-solver-23", atol=1e-4, rtol=1e-4, pid=(0.2, 0.7, 0.0))
    assert r23.nfe < r12.nfe                       # the higher-order pair takes larger steps
    torch.testing.assert_close(spid[-2], s23[-2], rtol=0, atol=1e-3)


def test_adaptive_sde_tolerance_and_info(x_gauss):
    nfes = []
    for eps in (0.05, 0.01):
        torch.manual_seed(3)
        infos = []
        r = ed.sample(gauss, x_gauss[:512], T.karras(5, SMIN, SMAX), solver="adaptive-sde", atol=eps,
                      rtol=eps, return_info=True, callback=infos.append)
        assert infos[-1]["accepted"] == len(infos) - 1
        assert r.nfe == 2 * (infos[-1]["accepted"] + infos[-1]["rejected"]) + 1
        nfes.append(r.nfe)
    assert nfes[0] < nfes[1]


# ---- bad options --------------------------------------------------------------------------

@pytest.mark.parametrize("solver,opts", [
    ("dpmpp-2m-sde", {"eta": -1.0}),
    ("dpmpp-2m-sde", {"solver_type": "rk4"}),
    ("dpmpp-3m-sde", {"s_noise": -1.0}),
    ("euler-maruyama", {"s_noise": -0.5}),
    ("sa-solver", {"predictor_order": 0}),
    ("sa-solver", {"corrector_order": 5}),
    ("sa-solver", {"tau": -1.0}),
    ("sa-solver", {"tau": lambda s: -1.0}),
    ("restart", {"inner": "restart"}),
    ("restart", {"inner": "dpm-solver-12"}),
    ("dpm-solver-12", {"pid": (1.0, 0.5)}),
    ("dpm-solver-12", {"atol": 0.0}),
    ("dpm-solver-23", {"theta": 1.5}),
    ("dpm-solver-23", {"prediction": "v"}),
    ("adaptive-sde", {"r": 0.0}),
])
def test_bad_options(solver, opts):
    with pytest.raises(ValueError):
        ed.sample(GM, x_T(), T.karras(6, 0.05, 20.0), solver=solver, seed=0, **opts)
