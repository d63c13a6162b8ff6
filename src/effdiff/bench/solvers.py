"""``effdiff bench --suite solvers``: solver x schedule x NFE on the zoo models, scored by FD and by
trajectory error against a high-accuracy solve from the same noise; the best configuration per
NFE budget; and our loop's per-step overhead beside diffusers' scheduler loop."""
from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

import torch

from ..sampling import sample
from .runner import REPORTS, SUITES, BenchConfig

BUDGETS = (3, 5, 8, 10, 15, 20, 50)
SOLVERS = ("ddim", "heun", "dpmpp-2m", "dpmpp-3m", "dpm-solver-3", "unipc", "deis", "ipndm")
# ays / dp: the schedules fitted for the model (shipped JSON); "@lo-hi": the same family over a
# narrower σ range than the process's full one (which for a flow model spans 1e-4 .. 999)
SCHEDULES = ("uniform", "logsnr", "karras", "ays", "dp", "logsnr@0.1-20", "karras@0.1-20")


@lru_cache(maxsize=None)
def nfe_of(solver: str, steps: int) -> int:
    """NFE a solver spends on ``steps`` steps, counted on a dummy denoiser."""
    sig = torch.linspace(10, 0.1, steps, dtype=torch.float64)
    sig = torch.cat([sig, sig.new_zeros(1)])
    return sample(lambda x, s: torch.zeros_like(x), torch.zeros(1, 1), sig, solver=solver,
                  return_info=True).nfe


def steps_for(solver: str, budget: int) -> int | None:
    """The most steps whose NFE fits ``budget`` (None if even one step does not)."""
    best = None
    for steps in range(1, budget + 1):
        if nfe_of(solver, steps) <= budget:
            best = steps
    return best


def _solvers(model: str, quick: bool) -> list[BenchConfig]:
    rows = [BenchConfig(model, "heun-karras-250", "heun", "karras", 250, traj_ref=True, reference=True)]
    solvers = ("ddim", "dpmpp-2m", "unipc") if quick else SOLVERS
    budgets = (5, 10) if quick else BUDGETS
    schedules = ("logsnr", "karras") if quick else SCHEDULES
    for solver in solvers:
        for budget in budgets:
            steps = steps_for(solver, budget)
            if steps is None or (steps < 2 and solver != "ddim"):
                continue
            for sched in schedules:
                name, opts = sched, {}
                if sched in ("ays", "dp"):
                    name = f"{sched}:{model}"
                elif "@" in sched:
                    name, rng = sched.split("@")
                    lo, hi = (float(v) for v in rng.split("-"))
                    opts = {"sigma_min": lo, "sigma_max": hi}
                rows.append(BenchConfig(model, f"{solver}/{sched}/{budget}", solver, name, steps,
                                        schedule_options=opts))
    return rows


def best_per_budget(results: dict) -> list[dict]:
    """For each model and NFE budget, the configuration with the lowest FD."""
    out = []
    for model in dict.fromkeys(r["model"] for r in results["rows"]):
        ref = next(r for r in results["rows"] if r["model"] == model and r.get("reference"))
        for b in BUDGETS:
            cand = [r for r in results["rows"] if r["model"] == model and not r.get("reference") and r["nfe"] <= b
                    and r["config"].endswith(f"/{b}")]
            if cand:
                best = min(cand, key=lambda r: r["fd"])
                out.append({"model": model, "budget": b, "config": best["config"], "nfe": best["nfe"],
                            "fd": best["fd"], "fd_vs_ref": best["fd"] / ref["fd"] - 1,
                            "traj_err": best.get("traj_err"), "class_acc": best.get("class_acc")})
    return out


def loop_overhead(steps: int = 50, repeats: int = 20) -> dict:
    """Per-step time of the sampling loop alone (a denoiser that costs ~nothing), ours vs diffusers'
    DPMSolverMultistepScheduler (dpmpp-2m) on the same 1x1x8x8 input; median of repeats."""
    from ..process import VP
    from ..denoisers import Denoiser
    from .. import timesteps

    class Zero(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t, y=None):
            return x * self.w

    x = torch.randn(1, 1, 8, 8)
    den = Denoiser(Zero(), VP(), "eps")
    sig = timesteps.uniform_t(steps, den.process)

    def ours():
        sample(den, x * sig[0].float(), sig, solver="dpmpp-2m")

    def median(fn):
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return sorted(ts)[len(ts) // 2] / steps * 1e6

    res = {"steps": steps, "ours_us_per_step": median(ours)}
    try:
        from diffusers import DPMSolverMultistepScheduler
    except ImportError:
        res["diffusers_us_per_step"] = None
        return res
    import diffusers
    sched = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear",
                                        algorithm_type="dpmsolver++", solver_order=2)
    zero = Zero()

    def theirs():
        sched.set_timesteps(steps)
        xt = x.clone()
        with torch.no_grad():
            for t in sched.timesteps:
                xt = sched.step(zero(xt, t), t, xt).prev_sample

    res["diffusers_us_per_step"] = median(theirs)
    res["diffusers_version"] = diffusers.__version__
    return res


def report(results: dict, out: Path) -> str:
    from ..viz import quality_vs_nfe_plot
    best = best_per_budget(results)
    quality_vs_nfe_plot(results["rows"], out / "quality_vs_nfe.png")
    ov = loop_overhead()
    results["best_per_budget"], results["overhead"] = best, ov
    lines = ["Best configuration per NFE budget (lowest FD; reference = Heun, 250 Karras steps, same noise):", "",
             "| model | NFE budget | best config | NFE | FD | FD vs reference | trajectory error |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for b in best:
        lines.append(f"| {b['model']} | {b['budget']} | {b['config']} | {b['nfe']} | {b['fd']:.3f} | "
                     f"{100 * b['fd_vs_ref']:+.1f}% | {b['traj_err']:.4f} |")
    d = ov.get("diffusers_us_per_step")
    lines += ["", f"Loop overhead per step (dpmpp-2m, {ov['steps']} steps, zero-cost model): effdiff "
              f"{ov['ours_us_per_step']:.1f} us" + (f", diffusers {ov.get('diffusers_version')} {d:.1f} us" if d else
                                                    ", diffusers not installed")]
    text = "\n".join(lines)
    (out / "best_per_budget.md").write_text(text + "\n")
    return text


def _parallel(model: str, quick: bool) -> list[BenchConfig]:
    """Parallel-in-time sampling of a 100-step DDIM (the window is one batched call)."""
    steps = 20 if quick else 100
    rows = [BenchConfig(model, f"ddim-{steps}", "ddim", "uniform", steps, reference=True, traj_ref=True)]
    for solver in ("paradigms", "parataa"):
        for tol in (0.1, 0.05):
            rows.append(BenchConfig(model, f"{solver}-tol{tol}", solver, "uniform", steps, options={"tol": tol}))
    return rows


def parallel_report(results: dict, out: Path) -> str:
    lines = ["Parallel sampling: Picard (ParaDiGMS) and triangular Anderson (ParaTAA) iterations against the "
             "sequential DDIM with the same noise:", "",
             "| model | run | parallel iterations | per-sample evaluations | steps | trajectory error vs sequential | ms / sample | FD |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results["rows"]:
        st = next(iter(r.get("info", {}).values()), None)
        if st is None:
            lines.append(f"| {r['model']} | {r['config']} (sequential) | {r['nfe']} | {r['nfe']} | {r['steps']} | 0 | "
                         f"{r['ms_per_sample']:.2f} | {r['fd']:.3f} |")
        else:
            lines.append(f"| {r['model']} | {r['config']} | {st['iters']} | {st['nfe']} | {st['steps']} | "
                         f"{r['traj_err']:.4f} | {r['ms_per_sample']:.2f} | {r['fd']:.3f} |")
    text = "\n".join(lines)
    (out / "parallel.md").write_text(text + "\n")
    return text


SUITES["solvers"] = _solvers
REPORTS["solvers"] = report
SUITES["parallel"] = _parallel
REPORTS["parallel"] = parallel_report
