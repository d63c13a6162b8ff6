"""Peer agreement (issue 3, item 6): where k-diffusion or diffusers has the same method, both run
on the same exact Gaussian-mixture denoiser, σ grid and noise in float64, and every state along
the trajectory must agree to a relative error below 1e-4 (most agree to ~1e-13).

k-diffusion's samplers take ``model(x, sigma)`` in VE form, our denoiser contract, and are loaded
from the installed ``sampling.py`` through a stub package (tests/peers_util.py). diffusers'
schedulers run on a discrete VP process: a fake eps-network evaluates the exact mixture ε at
the scheduler's timestep; effdiff sees the same network through ``ed.Denoiser``. Where diffusers
keeps float32 tables, the tests put the float64 ones of ``ed.process.VP`` in their place.

Documented, intended differences (asserted as such, not as agreement):
- the final step to σ=0 of lms / pndm / ipndm / deis: effdiff returns D(x, σ) (DDIM's rule),
  the peers extrapolate ε to σ=0; states before it are compared.
- dpmpp-3m-sde: effdiff's h² term is 2 φ3 d2, k-diffusion's φ3 d2 (solvers/dpm_solver.py).
- diffusers' DPMSolverSinglestepScheduler order 3 is a different 3rd-order variant from the
  paper's DPM-Solver-3 (Lu et al. 2022, Alg. 2), which effdiff and k-diffusion implement.
- SA-Solver: diffusers (after the official code) adds an O(h³) term to every order-2 predictor /
  corrector step; effdiff follows the paper. Order 1 agrees; the order-2 term is checked exactly.
- adaptive DPM-Solver: the embedded pairs agree; the step-size controllers differ by design.
- not compared: k-diffusion's sample_dpm_2 / dpm_2_ancestral / dpmpp_sde (no effdiff counterpart).

Peers: ``pip install --no-deps k-diffusion torchsde torchdiffeq trampoline`` and diffusers.
"""
import math

import pytest
import torch
from torch import nn

import effdiff as ed
from effdiff import timesteps as T
from effdiff.data import GaussianMixture
from effdiff.solvers.adaptive import _dpm_pair

from peers_util import Stream, load_k_sampling, max_rel, rel

GM = GaussianMixture([0.3, 0.5, 0.2], [[-1.0, 0.5], [1.0, 0.0], [0.2, -1.5]], [0.4, 0.6, 0.3])
SIG = T.karras(10, 0.05, 20.0)      # float64, non-uniform in σ and λ, ends in 0
B = 5
TOL = 1e-4


def x_T(sigma=20.0, seed=0):
    return sigma * torch.randn(B, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def ours(solver, x, sigmas=SIG, denoiser=GM, **opts):
    """effdiff's states after every step, through ed.sample."""
    states = []
    ed.sample(denoiser, x, sigmas, solver=solver, callback=lambda d: states.append(d["x"]), **opts)
    return states


def ours_direct(solver, x, sigmas=SIG, noise=None, denoiser=GM, **opts):
    """The registered solver function called directly with a given noise(like) function."""
    states = []
    ed.solvers.get(solver)(denoiser, x, sigmas, noise=noise, callback=lambda d: states.append(d["x"]), **opts)
    return states


@pytest.fixture(scope="module")
def K():
    return load_k_sampling()


def kd(fn, x, sigmas=SIG, **kw):
    """A k-diffusion sampler's states after every step: its callback reports x at the start of
    step i, so the states are callback x's 1.. plus the returned x."""
    starts = []
    out = fn(GM, x, sigmas, callback=lambda d: starts.append(d["x"]), disable=True, **kw)
    return starts[1:] + [out]


# ---- k-diffusion ---------------------------------------------------------------------------

@pytest.mark.parametrize("solver, kname, kopts, opts", [
    ("euler", "sample_euler", {}, {}),
    ("heun", "sample_heun", {}, {}),
    ("dpmpp-2m", "sample_dpmpp_2m", {}, {}),
    ("dpmpp-2s", "sample_dpmpp_2s_ancestral", {"eta": 0.0}, {}),
    ("dpmpp-2m-sde", "sample_dpmpp_2m_sde", {"eta": 0.0}, {"eta": 0.0}),
    ("euler-ancestral", "sample_euler_ancestral", {"eta": 0.0}, {"eta": 0.0}),
])
def test_k_diffusion_ode_samplers(K, solver, kname, kopts, opts):
    x = x_T()
    theirs = kd(getattr(K, kname), x, **kopts)
    assert max_rel(ours(solver, x, **opts), theirs) < 1e-12


def test_k_diffusion_lms(K):
    """Same states up to the last step; there k-diffusion integrates the ε polynomial to σ=0,
    effdiff returns D(x, σ_{n-1}) (DDIM's rule)."""
    x = x_T()
    for order in (1, 2, 3, 4):
        theirs, mine = kd(K.sample_lms, x, order=order), ours("lms", x, order=order)
        # k-diffusion's scipy.quad (epsrel=1e-4) integrates the polynomial exactly: ~1e-13
        assert max_rel(mine[:-1], theirs[:-1]) < 1e-11, order
        if order > 1:                                     # order 1: both are Euler = D
            assert rel(mine[-1], theirs[-1]) > 1e-6      # the documented final-step difference


@pytest.mark.parametrize("solver, kname", [("euler", "sample_euler"), ("heun", "sample_heun")])
def test_k_diffusion_churn(K, solver, kname):
    """EDM churn (s_churn > 0) with the same noise: k-diffusion draws torch.randn_like from the
    global RNG once per step, so effdiff's noise(like) does the same under the same seed.
    k-diffusion's callback reports the churned x̂, so the per-step check is on (σ̂, D(x̂, σ̂))."""
    x, opts = x_T(), dict(s_churn=4.0, s_noise=1.003)
    theirs, mine = [], []
    with torch.random.fork_rng():
        torch.manual_seed(123)
        out = getattr(K, kname)(GM, x, SIG, disable=True, callback=theirs.append, **opts)
        torch.manual_seed(123)
        y = ed.solvers.get(solver)(GM, x, SIG, noise=torch.randn_like, callback=mine.append, **opts)
    assert [float(d["sigma_hat"]) for d in mine] == pytest.approx([float(d["sigma_hat"]) for d in theirs], rel=1e-15)
    assert max_rel([d["denoised"] for d in mine], [d["denoised"] for d in theirs]) < 1e-12
    assert rel(y, out) < 1e-12
    assert rel(y, ours(solver, x)[-1]) > 1e-3      # the churn did something


@pytest.mark.parametrize("solver, kname, opts", [
    ("euler-ancestral", "sample_euler_ancestral", {"eta": 1.0}),
    ("euler-ancestral", "sample_euler_ancestral", {"eta": 0.5, "s_noise": 0.9}),
    ("dpmpp-2m-sde", "sample_dpmpp_2m_sde", {"eta": 1.0, "solver_type": "midpoint"}),
    ("dpmpp-2m-sde", "sample_dpmpp_2m_sde", {"eta": 1.0, "solver_type": "heun"}),
    ("dpmpp-2m-sde", "sample_dpmpp_2m_sde", {"eta": 0.6, "s_noise": 1.1, "solver_type": "heun"}),
])
def test_k_diffusion_sde_samplers_same_noise(K, solver, kname, opts):
    x = x_T()
    theirs_noise, our_noise = Stream(x.shape, 7), Stream(x.shape, 7)
    theirs = kd(getattr(K, kname), x, noise_sampler=theirs_noise, **opts)
    mine = ours_direct(solver, x, noise=our_noise, **opts)
    assert our_noise.draws == theirs_noise.draws == len(SIG) - 2   # every step but the one to 0
    assert max_rel(mine, theirs) < 1e-12


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_k_diffusion_3m_sde_documented_difference(K, eta):
    """dpmpp-3m-sde: identical on the two warm-up steps; on the first 3rd-order step effdiff
    adds exactly -φ3 d2 more than k-diffusion (full Taylor term 2 φ3 d2 against its φ3 d2)."""
    x = x_T()
    sig = torch.cat([SIG[:4], torch.zeros(1, dtype=torch.float64)])   # 3 steps with σ' > 0, then 0
    theirs_noise, our_noise = Stream(x.shape, 3), Stream(x.shape, 3)
    starts, den = [], []
    out = K.sample_dpmpp_3m_sde(GM, x, sig, eta=eta, noise_sampler=theirs_noise, disable=True,
                                callback=lambda d: (starts.append(d["x"]), den.append(d["denoised"])))
    theirs = starts[1:] + [out]
    mine = ours_direct("dpmpp-3m-sde", x, sig, noise=our_noise, eta=eta)
    assert max_rel(mine[:2], theirs[:2]) < 1e-12
    s = sig.tolist()
    h, h1, h2 = (math.log(s[k]) - math.log(s[k + 1]) for k in (2, 1, 0))
    r0, r1 = h1 / h, h2 / h
    d1_0, d1_1 = (den[2] - den[1]) / r0, (den[1] - den[0]) / r1
    d2 = (d1_0 - d1_1) / (r0 + r1)
    H = (1 + eta) * h
    phi_3 = (math.expm1(-H) / H + 1) / H - 0.5
    assert rel(mine[2] - theirs[2], -phi_3 * d2) < 1e-9
    assert rel(mine[2], theirs[2]) > 1e-6


def _kd_fast(K, x, sigma_min, sigma_max, nfe):
    """k-diffusion's DPM-Solver-fast in float64: it builds its end points with torch.tensor(float)
    and its λ grid with torch.linspace, both in torch's default dtype, so run it under float64."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return K.sample_dpm_fast(GM, x, sigma_min, sigma_max, nfe, disable=True)
    finally:
        torch.set_default_dtype(old)


def _fast_orders(nfe):
    """DPM-Solver-fast's step orders (Lu et al. 2022, Sec. 3.4): mostly 3rd order, the rest 1-2."""
    m = nfe // 3 + 1
    return [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]


@pytest.mark.parametrize("nfe", [10, 11, 12])
def test_k_diffusion_dpm_solver_fast(K, nfe):
    """DPM-Solver-fast = effdiff's singlestep dpm-solver-{1,2,3} on the same λ-uniform grid with
    the same per-step orders (run as consecutive segments)."""
    x, sigma_min, sigma_max = x_T(), 0.05, 20.0
    orders = _fast_orders(nfe)
    ts = torch.linspace(-math.log(sigma_max), -math.log(sigma_min), len(orders) + 1, dtype=torch.float64)
    sig = torch.exp(-ts)
    y = x
    for i, order in enumerate(orders):     # one step σ_i -> σ_{i+1} > 0 (then an unused step to 0)
        seg = torch.tensor([float(sig[i]), float(sig[i + 1]), 0.0], dtype=torch.float64)
        y = ours(f"dpm-solver-{order}", y, seg)[0]
    theirs = _kd_fast(K, x, sigma_min, sigma_max, nfe)
    assert rel(y, theirs) < 1e-12


@pytest.mark.parametrize("order", [2, 3])
def test_k_diffusion_adaptive_pairs(K, order):
    """DPM-Solver-12/23: the embedded lower/higher-order pair of one step agrees with
    k-diffusion's DPMSolver steps (DPM-Solver-1/2 resp. DPM-Solver-2 with r1 = 1/3 and -3).
    Full runs are not compared: k-diffusion's controller (atan limiter, accept_safety 0.81,
    batch-wide norm) differs from ours (θ h E^{-1/order}, max over the batch) by design."""
    x = x_T(3.0)
    s, s_next = 3.0, 1.7
    solver = K.DPMSolver(GM)
    t, t_next = torch.tensor(-math.log(s), dtype=torch.float64), torch.tensor(-math.log(s_next), dtype=torch.float64)
    if order == 2:
        lo, _ = solver.dpm_solver_1_step(x, t, t_next)
        hi, _ = solver.dpm_solver_2_step(x, t, t_next)
    else:
        lo, _ = solver.dpm_solver_2_step(x, t, t_next, r1=1 / 3)
        hi, _ = solver.dpm_solver_3_step(x, t, t_next)
    my_lo, my_hi, _ = _dpm_pair(GM, order, "noise")(x, s, s_next)
    assert rel(my_lo, lo) < 1e-12 and rel(my_hi, hi) < 1e-12


# ---- diffusers, on a discrete VP process ----------------------------------------------------

VP = ed.process.VP("linear", discrete=True)          # DDPM's 1000-step table, float64


class ExactEps(nn.Module):
    """A fake eps-network ε(x_t, t) on VP's table: the exact mixture ε at σ(t), x = x_t / α."""

    def __init__(self):
        super().__init__()
        self.dtype_anchor = nn.Parameter(torch.zeros((), dtype=torch.float64))  # Denoiser runs it in float64

    def forward(self, xn, t, labels=None):
        t = torch.as_tensor(t, dtype=torch.float64).expand(xn.shape[0])
        s = VP.t_to_sigma(t)[:, None]
        x = xn * torch.sqrt(1 + s ** 2)
        return (x - GM(x, s[:, 0])) / s


NET = ExactEps()
DEN = ed.Denoiser(NET, VP, "eps")                     # effdiff's view of the same network


@pytest.fixture(scope="module")
def diffusers():
    return pytest.importorskip("diffusers")


def alpha(s):
    return 1 / math.sqrt(1 + float(s) ** 2)


def vp_loop(sched, x_ve, sig, step_kw=None):
    """Run a VP-state diffusers scheduler (DDIM, PNDM, DEIS, SA-Solver, DPM-Solver singlestep)
    over ``sched.timesteps`` from VE-form x at sig[0]; its states after every step, in VE form
    (the i-th at sig[i + 1])."""
    x, states = x_ve * alpha(sig[0]), []
    for i, t in enumerate(sched.timesteps):
        x = sched.step(NET(x, t), t, x, **(step_kw or {})).prev_sample
        states.append(x / alpha(sig[i + 1]))
    return states


def ve_loop(sched, x_ve):
    """Run a VE-state (k-diffusion style) diffusers scheduler: Euler, Heun, LMS discrete."""
    x, states = x_ve, []
    for t in sched.timesteps:
        x = sched.step(NET(sched.scale_model_input(x, t), t), t, x).prev_sample
        states.append(x)
    return states


def table_sigmas(timesteps, last=None):
    """σ(t) of VP's table at the scheduler's timesteps (float64), then ``last`` (0 or σ(0))."""
    sig = VP.t_to_sigma(torch.as_tensor(timesteps, dtype=torch.float64))
    return torch.cat([sig, torch.tensor([0.0 if last is None else last], dtype=torch.float64)])


def use_vp_table(sched):
    """diffusers keeps ᾱ in float32: put VP's float64 table (same linear betas) in its place."""
    assert torch.allclose(sched.alphas_cumprod.double(), VP.alphas_cumprod, rtol=1e-5)
    sched.alphas_cumprod = VP.alphas_cumprod.clone()


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("n", [10, 25])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_diffusers_ddim(diffusers, n, eta):
    """DDIMScheduler (eta 0 and 1, the same noise) = ddim on σ(t_i) and σ=0 (set_alpha_to_one)."""
    sched = diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")
    sched.set_timesteps(n)
    use_vp_table(sched)
    sched.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    sig = table_sigmas(sched.timesteps)
    assert (-sched.timesteps.diff() == 1000 // n).all()          # DDIM steps t -> t - 1000 // n
    x = x_T(float(sig[0]))
    g = torch.Generator().manual_seed(5)
    theirs = vp_loop(sched, x, sig, {"eta": eta, "generator": g})
    mine = ours_direct("ddim", x, sig, noise=Stream(x.shape, 5), denoiser=DEN, eta=eta)
    assert max_rel(mine, theirs) < 1e-11


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("n", [10, 20])
def test_diffusers_pndm_plms(diffusers, n):
    """PNDMScheduler(skip_prk_steps=True), LDM's PLMS = pndm(warmup="pie"): a pseudo improved
    Euler first step, then Adams-Bashforth 2-4 on ε with the DDIM transfer. The grid ends at
    σ(t=0) (set_alpha_to_one=False, steps_offset=1); effdiff's extra step to 0 is not compared."""
    sched = diffusers.PNDMScheduler(skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1,
                                    timestep_spacing="leading")
    sched.set_timesteps(n)
    use_vp_table(sched)
    sched.final_alpha_cumprod = VP.alphas_cumprod[0].clone()
    ts = sched.timesteps.tolist()                 # t_{n-1}, t_{n-2}, t_{n-2}, ..., t_0: n + 1 calls
    grid = [ts[0]] + ts[2:]
    sig = table_sigmas(grid, float(VP.t_to_sigma(0.0)))
    x = x_T(float(sig[0]))
    xv, states = x * alpha(sig[0]), []
    for t in sched.timesteps:
        xv = sched.step(NET(xv, t), t, xv).prev_sample
        states.append(xv)
    theirs = [s / alpha(sig[i + 1]) for i, s in enumerate(states[1:])]   # call 0 is the PIE half step
    mine = ours("pndm", x, torch.cat([sig, sig.new_zeros(1)]), denoiser=DEN, warmup="pie")
    assert max_rel(mine[:-1], theirs) < 1e-11


@pytest.mark.parametrize("n", [10, 20])
def test_diffusers_ipndm(diffusers, n):
    """IPNDMScheduler (v-prediction on its own sin² schedule, σ_VP(s) = sin²(π s / 2)) = ipndm:
    Adams-Bashforth 1-4 on ε with the DDIM transfer. Its first step starts at α = 0 (σ = ∞, not
    a VE grid), so both start at its second timestep; its step to σ=0 extrapolates ε where
    effdiff returns D, so the states before it are compared."""
    sched = diffusers.IPNDMScheduler()
    sched.set_timesteps(n)
    steps = torch.cat([torch.linspace(1, 0, n + 1, dtype=torch.float64)[:-1], torch.zeros(1, dtype=torch.float64)])
    sched.betas = torch.sin(steps * math.pi / 2) ** 2                 # float64 copies of its tables
    sched.alphas = (1.0 - sched.betas ** 2) ** 0.5
    assert torch.allclose(sched.timesteps.double(), torch.atan2(sched.betas, sched.alphas)[:-1] * 2 / math.pi, atol=1e-6)
    sig = (sched.betas / sched.alphas)[1:]                             # VE σ, last 0
    sched.set_begin_index(1)
    x = x_T(float(sig[0]))
    xv, theirs = x * sched.alphas[1], []
    for i in range(1, n):
        a, s = sched.alphas[i], sched.betas[i]
        x0 = GM(xv / a, (s / a).expand(B))
        eps = (xv - a * x0) / s
        xv = sched.step(a * eps - s * x0, sched.timesteps[i], xv).prev_sample   # v = α ε - σ x0
        theirs.append(xv / sched.alphas[i + 1])
    mine = ours("ipndm", x, sig)
    assert max_rel(mine[:-1], theirs[:-1]) < 1e-11


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("order", [1, 2, 3])
def test_diffusers_deis(diffusers, order):
    """DEISMultistepScheduler (log-ρ AB-DEIS, ρ = σ/α = effdiff's σ) = deis(variable="log-sigma")
    with the same warm-up orders; lower_order_final off (effdiff has none). Grid ends at σ(0)."""
    n = 12
    sched = diffusers.DEISMultistepScheduler(solver_order=order, lower_order_final=False)
    sched.set_timesteps(n)
    use_vp_table(sched)
    sig = table_sigmas(sched.timesteps, float(VP.t_to_sigma(0.0)))
    sched.sigmas = sig.clone()
    x = x_T(float(sig[0]))
    theirs = vp_loop(sched, x, sig)
    mine = ours("deis", x, torch.cat([sig, sig.new_zeros(1)]), denoiser=DEN, order=order, variable="log-sigma")
    assert max_rel(mine[:-1], theirs) < 1e-10


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("cls, solver, last", [
    ("EulerDiscreteScheduler", "euler", slice(None)),
    ("HeunDiscreteScheduler", "heun", slice(None)),
    ("LMSDiscreteScheduler", "lms", slice(0, -1)),      # LMS's final step integrates ε to 0
])
def test_diffusers_karras_style(diffusers, cls, solver, last):
    """Euler / Heun / LMS discrete schedulers (VE-form state, eps model on x / sqrt(1 + σ²)).
    EulerDiscreteScheduler casts its state to float32 every step: agreement ~1e-7."""
    n = 10
    sched = getattr(diffusers, cls)(timestep_spacing="trailing")
    sched.set_timesteps(n)
    ts = sched.timesteps.tolist()
    grid = ts[:1] + ts[1::2] if solver == "heun" else ts        # Heun repeats t_1.. (corrector)
    sig = table_sigmas(grid)
    if solver == "heun":
        sched.sigmas = torch.cat([sig[:1], sig[1:-1].repeat_interleave(2), sig[-1:]])
    else:
        sched.sigmas = sig.clone()
    x = x_T(float(sig[0]))
    theirs = ve_loop(sched, x)
    if solver == "heun":
        theirs = theirs[1::2] + theirs[-1:]                       # states after each corrector
    mine = ours(solver, x, sig, denoiser=DEN)
    tol = 1e-6 if solver == "euler" else 1e-11
    assert max_rel(mine[last], theirs[last]) < tol


def _sa_runs(diffusers, p, c, tau, n=12):
    """SASolverScheduler (data prediction, constant τ, lower_order_final off) and sa-solver with the
    same orders and noise on the same grid (ending at σ(0)); (ours, theirs, our step dicts)."""
    sched = diffusers.SASolverScheduler(predictor_order=p, corrector_order=c, tau_func=lambda t: tau,
                                        algorithm_type="data_prediction", lower_order_final=False)
    sched.set_timesteps(n)
    use_vp_table(sched)
    sig = table_sigmas(sched.timesteps, float(VP.t_to_sigma(0.0)))
    sched.sigmas = sig.clone()
    x = x_T(float(sig[0]))
    theirs = vp_loop(sched, x, sig, {"generator": torch.Generator().manual_seed(11)})
    info = []
    ed.solvers.get("sa-solver")(DEN, x, torch.cat([sig, sig.new_zeros(1)]), noise=Stream(x.shape, 11),
                                callback=info.append, tau=tau, predictor_order=p, corrector_order=c)
    return [d["x"] for d in info], theirs, info


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("tau", [0.0, 1.0])
def test_diffusers_sa_solver_order1(diffusers, tau):
    """SASolverScheduler = sa-solver for predictor / corrector order 1, τ = 0 and τ = 1 with
    the same noise (per-step noise scale, exponential factors, corrector reuse of ξ)."""
    mine, theirs, _ = _sa_runs(diffusers, 1, 1, tau)
    assert max_rel(mine[:-1], theirs) < 1e-10


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("tau", [0.0, 1.0])
def test_diffusers_sa_solver_order2_documented_difference(diffusers, tau):
    """diffusers (after the official SA-Solver code) adds, to every order-2 predictor and corrector
    step, the O(h³) term c c(h) (D_0 - D_1) / (λ_0 - λ_1), c(h) = h²/2 - (ch - 1 + e^{-ch}) / c²,
    c = 1 + τ² (in VE form), "empirically better" but not in the paper's eqs. 14 / 16; effdiff
    follows the paper. With corrector order 1 the first order-2 predictor step (step 1) differs
    by exactly that term; everything before agrees."""
    mine, theirs, info = _sa_runs(diffusers, 2, 1, tau)
    assert rel(mine[0], theirs[0]) < 1e-12
    s1, s0, sig_t = (float(info[k]["sigma"]) for k in (0, 1, 2))  # σ of steps 0, 1 and after step 1
    h, cc = math.log(s0) - math.log(sig_t), 1 + tau * tau
    c_h = h * h / 2 - (h * cc - 1 + math.exp(-cc * h)) / cc ** 2
    term = cc * c_h / (math.log(s1) - math.log(s0)) * (info[1]["denoised"] - info[0]["denoised"])
    assert rel(theirs[1] - mine[1], term) < 1e-8
    assert rel(mine[1], theirs[1]) > 1e-7


def _singlestep(diffusers, alg, order, solver_type, n):
    """DPMSolverSinglestepScheduler on a λ-uniform fine grid of n steps (ending at σ > 0), orders
    [1, 2, (3)] repeated: one order-k step per k fine steps, so its intermediate points are the
    grid points at r = 1/2 resp. 1/3, 2/3. Returns (states after each full step, coarse grid)."""
    sched = diffusers.DPMSolverSinglestepScheduler(solver_order=order, algorithm_type=alg, solver_type=solver_type,
                                                   lower_order_final=False, final_sigmas_type="sigma_min")
    sched.set_timesteps(n)
    assert sched.order_list == list(range(1, order + 1)) * (n // order)
    sig = torch.exp(torch.linspace(math.log(60.0), math.log(0.05), n + 1, dtype=torch.float64))
    sched.sigmas, sched.timesteps = sig.clone(), VP.sigma_to_t(sig[:-1])
    x = x_T(float(sig[0]))
    states = vp_loop(sched, x, sig)
    coarse = torch.cat([sig[::order], sig.new_zeros(1)])
    return x, states[order - 1::order], coarse


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("alg, solver", [("dpmsolver", "dpm-solver-2"), ("dpmsolver++", "dpmpp-2s")])
def test_diffusers_singlestep_order2(diffusers, alg, solver):
    """DPMSolverSinglestepScheduler order 2 ("midpoint") = DPM-Solver-2 (Lu et al. 2022, Alg. 1,
    r1 = 1/2) resp. DPM-Solver++(2S) (Lu et al. 2022b, Alg. 1)."""
    x, theirs, coarse = _singlestep(diffusers, alg, 2, "midpoint", 12)
    mine = ours(solver, x, coarse, denoiser=DEN)
    assert max_rel(mine[:-1], theirs) < 1e-10


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("solver_type", ["midpoint", "heun"])
def test_diffusers_singlestep_order3_is_another_variant(diffusers, solver_type):
    """diffusers' singlestep order 3 is not the paper's DPM-Solver-3 (Lu et al. 2022, Alg. 2):
    its second stage u2 uses the order-2 step of ``solver_type`` and its last stage either the
    φ2 form with D1_1 ("midpoint") or a quadratic fit D1, D2 ("heun"); Alg. 2 (effdiff, k-diffusion
    above) takes u2 in φ2 form and the last stage in φ2 form with (m2 - m0) / r2. Both are third
    order: on this coarse grid (h ≈ 1.8) they differ by 2-4 %, several times less than DPM-Solver-2."""
    x, theirs, coarse = _singlestep(diffusers, "dpmsolver", 3, solver_type, 12)
    mine = ours("dpm-solver-3", x, coarse, denoiser=DEN)
    second = ours("dpm-solver-2", x, coarse, denoiser=DEN)
    d_variant, d_order2 = rel(mine[-2], theirs[-1]), rel(second[-2], theirs[-1])
    assert 1e-6 < d_variant < 0.2 * d_order2
