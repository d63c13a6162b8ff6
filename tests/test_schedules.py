"""New timestep schedules (polyexponential, diffusers spacings, flow shift, FastDPM) and the
schedule optimisers (AYS, Watson-style DP, fitted-schedule storage and interpolation)."""
import json
import math

import pytest
import torch

import effdiff as ed
import effdiff.cli  # noqa: F401  (ed.cli)
from effdiff import process as P
from effdiff import schedule_opt as SO
from effdiff import timesteps as T
from effdiff.data import GaussianMixture

VPD = P.VP("linear", discrete=True)
FLOW = P.Flow()
VPC = P.VP("cosine", discrete=False)


def _valid(s, n, first=None, last_pos=None):
    assert s.dtype == torch.float64 and s.shape == (n + 1,)
    assert s[-1].item() == 0.0 and (s[:-1] > s[1:]).all()
    if first is not None:
        assert s[0].item() == pytest.approx(first, rel=1e-12)
    if last_pos is not None:
        assert s[-2].item() == pytest.approx(last_pos, rel=1e-12)


@pytest.mark.parametrize("n", [1, 2, 7, 30])
def test_new_schedule_invariants(n):
    _valid(T.polyexponential(n, 0.002, 80.0, rho=2.0), n, 80.0, 0.002 if n > 1 else None)
    for sp in T.SPACINGS:
        _valid(T.discrete_spacing(n, VPD, sp), n)
    _valid(T.trailing(n, VPD), n, VPD.sigma_max)
    if n > 1:   # diffusers' linspace with one step is t = 0 (one of the flaws Lin et al. point out)
        _valid(T.linspace(n, VPD), n, VPD.sigma_max, VPD.sigma_min)
    for proc in (FLOW, VPD, VPC):
        _valid(T.flow_shift(n, proc, shift=3.0), n, proc.sigma_max, proc.sigma_min if n > 1 else None)
    for kind in T.FASTDPM_KINDS:
        _valid(T.fastdpm(n, VPD, kind), n, VPD.sigma_max, VPD.sigma_min if n > 1 else None)


def test_polyexponential_closed_form():
    torch.testing.assert_close(T.polyexponential(6, 0.01, 100.0, rho=1.0), T.exponential(6, 0.01, 100.0), rtol=1e-14, atol=0)
    s = T.polyexponential(3, 1.0, math.e ** 4, rho=2.0)   # ramp [1, .5, 0]^2 -> log σ = [4, 1, 0]
    torch.testing.assert_close(s[:-1].log(), torch.tensor([4.0, 1.0, 0.0], dtype=torch.float64), rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="rho"):
        T.polyexponential(4, 0.1, 1.0, rho=0)


def test_spacings_match_diffusers_and_lin_et_al_table2():
    # Lin et al. 2024, Table 2 (T = 1000, S = 10), there 1-indexed; diffusers' t = theirs - 1
    assert T.spacing_timesteps(10, 1000, "trailing").tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert T.spacing_timesteps(10, 1000, "leading").tolist() == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    assert T.spacing_timesteps(10, 1000, "leading", steps_offset=1).tolist() == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]
    assert T.spacing_timesteps(10, 1000, "linspace").tolist() == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    # non-divisible counts: diffusers rounds (half to even) as numpy does
    assert T.spacing_timesteps(3, 1000, "trailing").tolist() == [999, 666, 332]
    assert T.spacing_timesteps(7, 1000, "trailing").tolist() == [999, 856, 713, 570, 428, 285, 142]
    assert T.spacing_timesteps(3, 1000, "linspace").tolist() == [999, 500, 0]   # 499.5 rounds to 500
    assert T.spacing_timesteps(3, 1000, "leading").tolist() == [666, 333, 0]
    # σ are those of the table's integer steps
    t = torch.tensor([999.0, 899, 799, 699, 599, 499, 399, 299, 199, 99])
    torch.testing.assert_close(T.trailing(10, VPD)[:-1], VPD.t_to_sigma(t), rtol=0, atol=0)
    torch.testing.assert_close(T.get("leading", 10, VPD, steps_offset=1)[:-1], VPD.t_to_sigma(t - 98), rtol=0, atol=0)
    with pytest.raises(ValueError, match="discrete"):
        T.trailing(10, VPC)
    with pytest.raises(ValueError, match="spacing"):
        T.discrete_spacing(10, VPD, "middle")
    with pytest.raises(ValueError, match="past the table"):
        T.leading(1000, VPD, steps_offset=1)
    with pytest.raises(ValueError, match="more than"):
        T.trailing(1001, VPD)


def test_flow_shift():
    torch.testing.assert_close(T.flow_shift(9, FLOW, shift=1.0), T.uniform_t(9, FLOW), rtol=1e-14, atol=0)
    # SD3: with t in [0, 1] the shift is σ' = s σ on every interior point
    full = P.Flow(t_min=0.0, t_max=0.999999)
    u = torch.linspace(1, 0, 6, dtype=torch.float64)[1:-1]
    t = full.t_min + u * (full.t_max - full.t_min)
    torch.testing.assert_close(T.flow_shift(6, full, shift=3.0)[1:-2], 3.0 * t / (1 - t), rtol=1e-4, atol=0)
    assert (T.flow_shift(8, FLOW, 3.0)[1:-2] > T.uniform_t(8, FLOW)[1:-2]).all()   # shift > 1: noisier
    with pytest.raises(ValueError, match="shift"):
        T.flow_shift(4, FLOW, shift=0.0)


def test_fastdpm_variance_schedules():
    for kind in T.FASTDPM_KINDS:
        t = T.fastdpm_steps(10, VPD, kind)
        assert t[0].item() == 999.0 and t[-1].item() == 0.0 and (t[:-1] > t[1:]).all()
        assert (t != t.round()).sum() >= 7        # continuous (fractional) steps
        # the σ come from a β̂ schedule: γ̄_s = prod (1 - β̂) with β̂ uniform / quadratic in s
        s = T.fastdpm(10, VPD, kind)[:-1].flip(0)
        gamma = 1 / (1 + s ** 2)
        beta = 1 - gamma / torch.cat([torch.ones(1, dtype=torch.float64), gamma[:-1]])
        b = beta if kind == "uniform" else beta.sqrt()
        assert beta[0].item() == pytest.approx(1e-4, rel=1e-9)
        torch.testing.assert_close(b.diff(), b.diff()[:1].expand(9), rtol=1e-6, atol=0)
    # quadratic in sqrt β̂ puts more steps at low noise than uniform β̂
    assert T.fastdpm_steps(10, VPD, "quadratic")[5] < T.fastdpm_steps(10, VPD, "uniform")[5]
    with pytest.raises(ValueError, match="kind"):
        T.fastdpm(10, VPD, "cubic")
    with pytest.raises(ValueError, match="discrete"):
        T.fastdpm(10, FLOW)


def test_get_new_names():
    torch.testing.assert_close(T.get("polyexponential", 5, VPC, rho=2.0), T.polyexponential(5, VPC.sigma_min, VPC.sigma_max, 2.0))
    torch.testing.assert_close(T.get("flow-shift", 5, FLOW, shift=2.0), T.flow_shift(5, FLOW, 2.0))
    torch.testing.assert_close(T.get("fastdpm", 5, VPD, kind="quadratic"), T.fastdpm(5, VPD, "quadratic"))
    with pytest.raises(KeyError, match="unknown schedule"):
        T.get("nope", 5, VPD)


# --------------------------------------------------------------------------- storage


def test_interpolate():
    s = T.karras(10, 0.002, 80.0)
    torch.testing.assert_close(SO.interpolate(s, 10), s, rtol=0, atol=0)
    for n in (3, 17, 40):
        t = SO.interpolate(s, n)
        _valid(t, n, 80.0, 0.002)
    # log-linear: doubling an exponential schedule's resolution stays exponential
    torch.testing.assert_close(SO.interpolate(T.exponential(5, 0.01, 100.0), 9), T.exponential(9, 0.01, 100.0), rtol=1e-13, atol=0)
    # back to the original count after a refinement in between: the knots are reproduced
    torch.testing.assert_close(SO.interpolate(SO.interpolate(s, 19), 10), s, rtol=1e-12, atol=0)


def test_save_load_and_get(tmp_path, monkeypatch):
    s = T.karras(10, 0.01, 50.0)
    path = SO.save_schedule(tmp_path / "x.json", s, {"method": "test"})
    back, meta = SO.load_schedule(path, with_meta=True)
    torch.testing.assert_close(back, s, rtol=0, atol=0)
    assert meta == {"method": "test"}
    torch.testing.assert_close(T.get(str(path), 20, VPD), SO.interpolate(s, 20))
    monkeypatch.setattr(SO, "SCHEDULE_DIR", tmp_path)
    SO.save_schedule(tmp_path / "ays-toy.json", s)
    torch.testing.assert_close(T.get("ays:toy", 10, VPD), s, rtol=0, atol=0)
    torch.testing.assert_close(T.get("ays:toy", 5, VPD), SO.interpolate(s, 5))
    with pytest.raises(KeyError, match="unknown fitted schedule"):
        T.get("ays:missing", 10, VPD)
    (tmp_path / "bad.json").write_text(json.dumps({"sigmas": [3.0, 1.0]}))
    with pytest.raises(ValueError, match="not an effdiff schedule"):
        SO.load_schedule(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="end in exactly 0"):
        SO.save_schedule(tmp_path / "y.json", torch.tensor([3.0, 1.0]))


def test_shipped_schedules_resolve():
    for name in SO.names():
        method, model = name.split("-", 1)
        s = T.get(f"{method}:{model}", 10, VPD)
        _valid(s, 10)
        _valid(T.get(f"{method}:{model}", 25, VPD), 25)


# --------------------------------------------------------------------------- DP


def test_dp_finds_known_optimum():
    k = 12
    i = torch.arange(k, dtype=torch.float64)
    # cost of a jump i -> j: (j - i)^2 (so equal jumps are optimal) plus a toll on entering 5
    cost = (i[None, :] - i[:, None]) ** 2
    cost[:, 5] += 100.0
    assert SO.dp_path(cost, 1) == [0, 11]
    assert SO.dp_path(cost, 11) == list(range(12))
    p = SO.dp_path(cost, 3)          # three jumps summing to 11 avoiding 5: lengths {4,4,3} best
    assert p[0] == 0 and p[-1] == 11 and len(p) == 4 and 5 not in p
    assert sorted(b - a for a, b in zip(p[:-1], p[1:])) == [3, 4, 4]
    # brute force agrees on a random cost
    g = torch.Generator().manual_seed(0)
    c = torch.rand(8, 8, generator=g, dtype=torch.float64)
    import itertools
    best = min((sum(c[a, b] for a, b in zip((0,) + m + (7,), m + (7,))).item(), (0,) + m + (7,))
               for m in itertools.combinations(range(1, 7), 3))
    assert tuple(SO.dp_path(c, 4)) == best[1]
    with pytest.raises(ValueError, match="n_steps"):
        SO.dp_path(cost, 12)


def test_dp_schedule_on_gaussian():
    gm = GaussianMixture([1.0], torch.zeros(1, 4), [0.5])
    data = gm.sample(256, torch.Generator().manual_seed(0)).double()
    s, info = SO.dp(gm, data, 6, 0.01, 40.0, num_points=40, num_samples=16, return_info=True)
    _valid(s, 6, 40.0, 0.01)
    grid = T.exponential(40, 0.01, 40.0)[:-1]
    cost = SO.ddim_cost(gm, data, grid, num_samples=16)
    # the DP path beats the uniform-in-log path on the same grid, which it could have chosen
    uniform = [0, 8, 16, 23, 31, 39]
    c_uni = sum(cost[a, b].item() for a, b in zip(uniform[:-1], uniform[1:]))
    assert info["cost"] <= c_uni
    # the proxy is the DDIM one-step error: on this Gaussian D(x, σ) = s²/(s²+σ²) x and the ODE
    # flow is x(σ') = x sqrt((s²+σ'²)/(s²+σ²)), so c[i,j] = gain_j |a_ij - b_ij| RMS(x_i) with
    # a = (s² + σ_i σ_j)/(s² + σ_i²), b = sqrt((s²+σ_j²)/(s²+σ_i²)): ratios along a row are exact
    s2, sd = 0.25, float(cost.new_tensor(0))

    def row(i, j):
        si, sj = grid[i].item(), grid[j].item()
        a, b = (s2 + si * sj) / (s2 + si ** 2), math.sqrt((s2 + sj ** 2) / (s2 + si ** 2))
        return abs(a - b) / math.sqrt(1 + sj ** 2 / s2)   # gain with σ_d ~ s (ratio: σ_d cancels to O(σ_d - s))

    for i, j, k in [(5, 20, 30), (10, 25, 39)]:
        assert (cost[i, j] / cost[i, k]).item() == pytest.approx(row(i, j) / row(i, k), rel=0.05)
    assert torch.isinf(cost[3, 2]) and torch.isfinite(cost[2, 3])


# --------------------------------------------------------------------------- AYS


def test_klub_exact_on_gaussian():
    """For data N(0, s²) (d dims) the KLUB integrand has a closed form: with D(x, σ) = g(σ) x,
    g = s²/(s²+σ²), E||g(σ) x_σ - g(σ_i) x_{σ_i}||² = d (g² (s²+σ²) + g_i² (s²+σ_i²) - 2 g g_i (s²+σ²))."""
    s2, d = 0.25, 4
    gm = GaussianMixture([1.0], torch.zeros(1, d), [math.sqrt(s2)])
    data = gm.sample(4096, torch.Generator().manual_seed(1)).double()
    hi, lo = 2.0, 0.5
    est = SO.KLUB(gm, data, num_samples=4096, seed=3)(hi, lo).item()

    def integrand(sig):
        g, gi = s2 / (s2 + sig ** 2), s2 / (s2 + hi ** 2)
        return d * (g * g * (s2 + sig ** 2) + gi * gi * (s2 + hi ** 2) - 2 * g * gi * (s2 + sig ** 2)) / sig ** 3

    from scipy.integrate import quad
    exact = quad(integrand, lo, hi)[0]
    assert est == pytest.approx(exact, rel=0.08)


def test_ays_on_gaussian_lowers_klub():
    gm = GaussianMixture([1.0], torch.zeros(1, 4), [0.5])
    data = gm.sample(512, torch.Generator().manual_seed(0)).double()
    s, info = SO.ays(gm, data, 8, 0.002, 80.0, num_samples=32, num_candidates=6, max_sweeps=4, return_info=True)
    _valid(s, 8, 80.0, 0.002)
    assert info["klub"] < 0.5 * info["klub_init"]
    h = info["history"]
    assert all(b <= a for a, b in zip(h[:-1], h[1:]))     # coordinate descent never goes up
    held = SO.KLUB(gm, data, num_samples=128, seed=11)     # on fresh Monte-Carlo samples too
    assert held.total(s) < 0.5 * held.total(T.karras(8, 0.002, 80.0))
    # hierarchical: 5 -> 10 keeps the 5-step knots and adds one point per interval
    opts = dict(num_samples=16, num_candidates=4, max_sweeps=2, base_steps=5)
    s5, s10 = SO.ays(gm, data, 5, 0.002, 80.0, **opts), SO.ays(gm, data, 10, 0.002, 80.0, **opts)
    _valid(s10, 10, 80.0, 0.002)
    assert set(s5[:-1].tolist()) <= set(s10[:-1].tolist())
    with pytest.raises(ValueError, match="init"):
        SO.ays(gm, data, 4, 0.002, 80.0, init="nope")


def test_subdivide():
    s = T.exponential(4, 0.01, 10.0)
    t, new = SO.subdivide(s)
    _valid(t, 8, 10.0, 0.01)
    assert new == [1, 3, 5, 6]
    assert all(v in t.tolist() for v in s[:-1].tolist())


def test_fit_writes_where_told_and_loads_by_path(tmp_path):
    """Fitting writes the JSON the caller names (never into the installed package) and
    ``timesteps.get(path, n, process)`` reads it back; bad outputs fail before any compute."""
    from effdiff import schedule_opt as so
    shipped = sorted(so.SCHEDULE_DIR.glob("*.json"))
    before = {p: p.stat().st_mtime_ns for p in shipped}
    out = tmp_path / "dp-unet.json"
    so.fit("digits-unet", out, "dp", 2, num_points=6, num_samples=2, substeps=1)
    den = ed.zoo.load("digits-unet")
    sig = ed.timesteps.get(str(out), 2, den.process)
    assert len(sig) == 3 and sig[-1] == 0 and (sig[:-1] > sig[1:]).all()
    assert {p: p.stat().st_mtime_ns for p in shipped} == before
    with pytest.raises(ValueError, match=".json"):
        so.fit("digits-unet", tmp_path / "x.txt")
    with pytest.raises(ValueError, match="out="):
        so.fit("digits-unet", None)
    assert ed.cli.main(["schedules", "fit", "--model", "digits-unet", "--out", str(tmp_path / "f" / "g" / "x.json"),
                        "--method", "nope"]) == 2


# --------------------------------------------------------------------------- e2e (fitted through one solver)


def test_e2e_finds_the_exact_optimum_on_a_gaussian():
    """Data N(0, s² I), exact denoiser D = s²/(s²+σ²) x, Euler on 40 -> σ1 -> 0: the output is
    x_T (σ1/40) s²/(s²+σ1²) (+ O(1e-4)), whose scale peaks at σ1 = s. Both objectives want the largest
    scale (the data's std is s, the teacher's scale is about s/40 per unit of x_T), so both must land
    on σ1 = s = 0.5 from the log-uniform start (σ1 = 0.63)."""
    s_d = 0.5
    gm = GaussianMixture([1.0], torch.zeros(1, 4), [s_d])
    data = gm.sample(1024, torch.Generator().manual_seed(0))
    teacher = lambda x, c: x * s_d / math.sqrt(s_d ** 2 + 40.0 ** 2)      # the exact ODE solution from σ = 40
    for objective in ("data", "teacher"):
        s, info = SO.e2e(gm, data, "euler", 2, sigma_min=0.01, sigma_max=40.0, objective=objective, reference=teacher,
                         num_samples=512, projections=128, fit_sigma_max=False, return_info=True)
        _valid(s, 2, 40.0)
        assert s[1].item() == pytest.approx(s_d, rel=0.03), objective
        assert info["loss"] < info["loss_init"] and info["nfe"] == info["evaluations"] * 2 * 512   # Euler: 2 per solve
        h = info["history"]
        assert all(b <= a for a, b in zip(h[:-1], h[1:]))     # coordinate search never goes up
    # with σ_max free the schedule stays inside the range and strictly decreasing
    s = SO.e2e(gm, data, "dpmpp-2m", 3, sigma_min=0.01, sigma_max=40.0, num_samples=256, projections=64, max_sweeps=3)
    assert s[0] <= 40.0 and s[-2] >= 0.01 and (s[:-1] > s[1:]).all() and s[-1] == 0


def test_e2e_bad_input():
    gm = GaussianMixture([1.0], torch.zeros(1, 4), [0.5])
    data = gm.sample(64, torch.Generator().manual_seed(0))
    kw = dict(sigma_min=0.01, sigma_max=40.0, num_samples=16, projections=8, max_sweeps=1)
    with pytest.raises(ValueError, match="objective"):
        SO.e2e(gm, data, "euler", 2, objective="fid", **kw)
    with pytest.raises(ValueError, match="reference"):
        SO.e2e(gm, data, "euler", 2, objective="teacher", **kw)
    with pytest.raises(KeyError, match="nope"):
        SO.e2e(gm, data, "nope", 2, **kw)
    with pytest.raises(ValueError, match="steps"):
        SO.e2e(gm, data, "euler", 3, init=T.exponential(2, 0.01, 40.0), **kw)
    with pytest.raises(ValueError, match="solver"):
        SO.fit("digits-unet", "x.json", "e2e", 2)
    with pytest.raises(ValueError, match="solver"):
        SO.fit("digits-unet", "x.json", "ays", 2, solver="euler")


def test_e2e_fit_records_its_solver(tmp_path):
    out = tmp_path / "e2e.json"
    SO.fit("digits-unet", out, "e2e", 3, solver="dpmpp-2m", num_samples=32, projections=16, max_sweeps=1)
    sig, meta = T.load_schedule(out, with_meta=True)
    assert meta["solver"] == "dpmpp-2m" and meta["steps"] == 3 and meta["method"] == "e2e"
    assert "solver='dpmpp-2m'" in meta["command"] and "projections=16" in meta["command"] and len(sig) == 4
    # the command reproduces the fit: the CLI where its flags say everything, else the Python call
    assert SO._command("m", "o.json", "e2e", 4, 0, "ipndm", {"num_samples": 1024, "progress": False}) == (
        "effdiff schedules fit --model m --method e2e --steps 4 --seed 0 --solver ipndm --samples 1024 --out o.json")
