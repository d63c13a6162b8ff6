"""Parallel-in-time sampling (ParaDiGMS, ParaTAA): same answer as the sequential solver with far
fewer parallel iterations, on a Gaussian mixture whose exact denoiser is known in closed form."""
import pytest
import torch

import effdiff as ed
from effdiff.data import GaussianMixture
from effdiff.solvers.parallel import paradigms, parataa

SIG = ed.timesteps.karras(100, 0.002, 80.0)


def mixture():
    g = torch.Generator().manual_seed(0)
    gm = GaussianMixture(torch.ones(4), torch.randn(4, 2, generator=g, dtype=torch.float64) * 2, torch.full((4,), 0.3))
    return gm, torch.randn(8, 2, dtype=torch.float64, generator=g) * 80


def test_solvers_registered():
    assert {"paradigms", "parataa"} <= set(ed.solvers.names())


def test_paradigms_ddim_matches_sequential_in_quarter_of_the_steps():
    gm, x = mixture()
    ref = ed.sample(gm, x, SIG, solver="ddim")
    out, st = paradigms(gm, x, SIG, inner="ddim", tol=0.1)
    assert st["converged"] and st["steps"] == 100
    assert st["iters"] <= 25                       # the bar: at most 1/4 of 100 steps
    assert st["calls"] == st["iters"]
    assert (out - ref).abs().max() < 5e-3          # data scale ~2
    # a tighter tolerance tightens the answer
    out2, st2 = paradigms(gm, x, SIG, inner="ddim", tol=0.01)
    assert (out2 - ref).abs().max() < 1e-3 and st2["iters"] >= st["iters"]


def test_paradigms_nfe_accounting_through_sample():
    gm, x = mixture()
    steps, calls = [], []
    res = ed.sample(gm, x, SIG, solver="paradigms", window=16, return_info=True,
                    callback=lambda info: (steps.append(int(info["i"])), calls.append(info["calls"])))
    assert steps == list(range(100))               # exactly one callback per step, in order
    assert res.steps == 100
    _, st = paradigms(gm, x, SIG, window=16)
    assert res.nfe == st["iters"] == st["calls"]   # ed.sample counts batched calls
    # per-sample evaluations: the sum of window sizes, between the steps and iters * window
    assert 100 <= st["nfe"] <= 16 * st["iters"] and st["nfe"] > st["iters"]
    assert calls[-1] == st["iters"]


def test_paradigms_stats_in_result_and_live_in_callbacks():
    gm, x = mixture()
    seen = []
    res = ed.sample(gm, x, SIG, solver="paradigms", window=16, return_info=True,
                    callback=lambda info: seen.append(info["calls"]))
    _, st = paradigms(gm, x, SIG, window=16)
    assert res.stats == st and st["converged"]      # the result carries the solver's counters
    assert seen == sorted(seen) and seen[-1] == st["iters"]   # the last callback sees the totals


@pytest.mark.parametrize("inner,eta", [("ddpm", None), ("ddim", 0.5)])
def test_paradigms_stochastic_matches_sequential_same_noise(inner, eta):
    gm, x = mixture()
    sig = ed.timesteps.karras(50, 0.002, 80.0)
    opts = {} if eta is None else {"eta": eta}
    ref = ed.sample(gm, x, sig, solver=inner, seed=3, **opts)
    out = ed.sample(gm, x, sig, solver="paradigms", inner=inner, seed=3, tol=0.01, **opts)
    other = ed.sample(gm, x, sig, solver=inner, seed=4, **opts)
    assert (out - ref).abs().max() < 1e-2
    assert (other - ref).abs().max() > 0.1         # the noise matters, so the match is real


def test_paradigms_euler_equals_ddim_and_window_one_is_sequential():
    gm, x = mixture()
    sig = ed.timesteps.karras(20, 0.002, 80.0)
    ref = ed.sample(gm, x, sig, solver="euler")
    out, st = paradigms(gm, x, sig, inner="euler", window=1)
    assert st["iters"] == 20 and st["nfe"] == 20
    assert (out - ref).abs().max() < 1e-6           # round-off only (a different but equal formula)


def test_parataa_matches_sequential_with_few_iterations():
    gm, x = mixture()
    ref = ed.sample(gm, x, SIG, solver="ddim")
    out, st = parataa(gm, x, SIG, tol=0.05)
    assert st["converged"] and st["iters"] <= 25
    assert (out - ref).abs().max() < 3e-2
    res = ed.sample(gm, x, SIG, solver="parataa", tol=0.05, return_info=True)
    assert res.nfe == st["iters"] and torch.equal(res.x, out)


def test_parataa_anderson_beats_plain_fixed_point():
    """On a linear problem (one Gaussian) Triangular AA converges where Picard has barely moved."""
    g = torch.Generator().manual_seed(1)
    gm = GaussianMixture([1.0], torch.randn(1, 2, generator=g, dtype=torch.float64), [0.3])
    x = torch.randn(8, 2, dtype=torch.float64, generator=g) * 80
    ref = ed.sample(gm, x, SIG, solver="ddim")
    with pytest.warns(UserWarning, match="max_iters"):
        fp, _ = parataa(gm, x, SIG, history=0, max_iters=8, tol=1e-3)
    with pytest.warns(UserWarning, match="max_iters"):
        taa, st = parataa(gm, x, SIG, history=4, max_iters=8, tol=1e-3)
    assert st["iters"] == 8 and not st["converged"]
    assert (fp - ref).abs().max() > 10
    assert (taa - ref).abs().max() < 1e-2


@pytest.mark.parametrize("opts,match", [({"inner": "heun"}, "one-step"), ({"window": 0}, "window"),
                                        ({"tol": 0.0}, "tol"), ({"inner": "euler", "eta": 1.0}, "deterministic"),
                                        ({"max_iters": 0}, "max_iters")])
def test_bad_options(opts, match):
    gm, x = mixture()
    with pytest.raises(ValueError, match=match):
        paradigms(gm, x, SIG, **opts)


def test_parataa_bad_history():
    gm, x = mixture()
    with pytest.raises(ValueError, match="history"):
        parataa(gm, x, SIG, history=-1)


def test_class_conditional_window_is_one_call():
    """Under ed.sample the bound condition is tiled across the window: one counted call per iteration."""
    got = []

    def den(x, sigma, cond=None):
        got.append((x.shape[0], None if cond is None else cond.shape[0]))
        return x * 0 + cond.to(x.dtype)[:, None]
    x = torch.randn(3, 2, dtype=torch.float64) * 80
    cond = torch.tensor([0, 1, 2])
    sig = ed.timesteps.karras(12, 0.01, 80.0)
    res = ed.sample(den, x, sig, solver="paradigms", window=4, cond=cond, return_info=True)
    assert all(b == c for b, c in got) and max(b for b, _ in got) == 12
    ref = ed.sample(den, x, sig, solver="ddim", cond=cond)
    assert (res.x - ref).abs().max() < 1e-6


def test_parallel_report_reads_the_solver_counters(tmp_path):
    """The bench's parallel table takes iterations and per-sample evaluations from the row's
    ``info`` (SampleResult.stats, a flat dict) — a regression: it once indexed it as nested."""
    from effdiff.bench.solvers import parallel_report
    gm, x = mixture()
    res = ed.sample(gm, x, SIG, solver="paradigms", tol=0.1, return_info=True)
    base = {"model": "toy", "ms_per_sample": 1.0, "ms_sd": 0.1, "fd": 1.0, "fd_sd": 0.1, "steps": 100}
    rows = [{**base, "config": "ddim-100", "nfe": 100},
            {**base, "config": "paradigms-tol0.1", "nfe": res.nfe, "info": dict(res.stats), "traj_err": 0.001}]
    table = parallel_report({"rows": rows}, tmp_path)
    line = next(ln for ln in table.splitlines() if "paradigms-tol0.1" in ln)
    cells = [c.strip() for c in line.split("|")]
    assert cells[3] == str(res.stats["iters"]) and cells[4] == str(res.stats["nfe"])
    assert res.stats["nfe"] > res.stats["iters"]
