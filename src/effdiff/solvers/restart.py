"""Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative Processes"):
an ODE solve interleaved with restart intervals [σ_min, σ_max] in which fresh noise takes the
sample back up to σ_max (x += sqrt(σ_max² - σ_min²) z, the forward process) and the ODE is
re-solved down to σ_min, K times. The forward noise contracts accumulated errors while the
ODE keeps its small discretization error.

A combinator: any registered solver (``inner``) does every ODE solve, on the main schedule
and on each restart's own ``n``-step Karras schedule σ_max → σ_min. A restart's σ_min snaps
to the nearest main-schedule σ (in log σ) and runs at the end of the outer step landing
there: the callback is still called once per *outer* step;
the restart's own steps happen inside that outer step (the loop context's stage counter keeps
counting their evaluations); the callback of the step landing at σ_min shows the state before
the restart. Restarts with K = 0 change nothing: the result is the inner
solver's. Each main segment between restarts is a fresh call of the inner solver, so
multistep inner solvers restart their history there (as they must after fresh noise).
"""
from __future__ import annotations

import math

import torch

from . import get, register
from ..timesteps import karras


def _plan(sigmas, restarts):
    """{main index j: [(σ_max, K, n), ...]} for restarts with K > 0, σ_min snapped to σ_j."""
    plan = {}
    logs = torch.log(sigmas[1:-1])
    for r in restarts:
        if len(r) != 4:
            raise ValueError(f"each restart is (sigma_min, sigma_max, K, n), got {r!r}")
        s_min, s_max, K, n = float(r[0]), float(r[1]), r[2], r[3]
        if not 0 < s_min < s_max or not math.isfinite(s_max):
            raise ValueError(f"a restart needs 0 < sigma_min < sigma_max < inf, got {r!r}")
        if int(K) != K or K < 0 or int(n) != n or n < 1:
            raise ValueError(f"a restart's K must be an integer >= 0 and n an integer >= 1, got {r!r}")
        if K == 0:
            continue
        if len(logs) == 0:
            raise ValueError("restarts need a schedule with at least one σ > 0 after the start")
        j = int((logs - math.log(s_min)).abs().argmin()) + 1
        if s_max <= float(sigmas[j]):
            raise ValueError(f"restart sigma_max={s_max} must exceed its sigma_min snapped to the "
                             f"schedule, {float(sigmas[j]):.4g}")
        plan.setdefault(j, []).append((s_max, int(K), int(n)))
    return plan


@register("restart", loop=True)
def restart(loop, x, *, inner: str = "heun", restarts=(), s_noise: float = 1.0, **inner_opts):
    """Restart sampling (Xu et al. 2023, Alg. 1): the ``inner`` solver on the main schedule plus
    ``restarts`` = [(σ_min, σ_max, K, n), ...]: at σ_min jump to σ_max with fresh noise and
    re-solve n inner steps (Karras ρ=7 grid) back to σ_min, K times. inner_opts go to ``inner``."""
    if inner == "restart":
        raise ValueError("restart cannot be its own inner solver")
    if s_noise < 0:
        raise ValueError(f"s_noise must be >= 0, got {s_noise}")
    if get(inner).loop:
        raise ValueError(f"restart needs a fixed-grid inner solver; {inner!r} chooses its own steps")
    sigmas = loop.sigmas
    plan = _plan(sigmas, restarts)
    start = 0
    for j in sorted(plan) + [len(sigmas) - 1]:
        x = loop.run(inner, x, start, j, **inner_opts)       # main steps start..j-1, true indices
        for s_max, K, n in plan.get(j, ()):
            s_min = float(sigmas[j])
            inner_sigmas = karras(n + 1, s_min, s_max)[:-1]     # n steps σ_max → σ_min
            inner_sigmas[0], inner_sigmas[-1] = s_max, s_min
            for _ in range(K):
                x = x + loop.noise(x) * (s_noise * math.sqrt(s_max ** 2 - s_min ** 2))
                x = loop.solve(inner, x, inner_sigmas, **inner_opts)
        start = j
    return x
