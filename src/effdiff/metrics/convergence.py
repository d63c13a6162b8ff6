"""Accuracy of deterministic solvers: a high-accuracy reference solve of the probability-flow
ODE and the measured order of convergence (error ~ C h^p, p from a log-log fit)."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from .. import timesteps
from ..sampling import sample


def reference_solve(denoiser: Callable, x: torch.Tensor, sigma_from: float, sigma_to: float,
                    cond=None, rtol: float = 1e-10, atol: float = 1e-10) -> torch.Tensor:
    """Integrate dx/dσ = (x - D(x, σ)) / σ from σ_from to σ_to > 0 with scipy's adaptive DOP853
    in float64 (in log σ, where the ODE is smooth). The 'exact' answer for order tests."""
    from scipy.integrate import solve_ivp
    if not sigma_from > sigma_to > 0:
        raise ValueError(f"need sigma_from > sigma_to > 0, got {sigma_from}, {sigma_to}")
    shape = x.shape

    def f(u, y):  # u = log σ;  dx/du = σ dx/dσ = x - D(x, σ)
        xt = torch.from_numpy(y).reshape(shape)
        s = torch.full((shape[0],), math.exp(u), dtype=torch.float64)
        d = denoiser(xt, s, cond) if cond is not None else denoiser(xt, s)
        return (xt - d).reshape(-1).numpy()

    sol = solve_ivp(f, (math.log(sigma_from), math.log(sigma_to)), x.double().reshape(-1).numpy(),
                    method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"reference solve failed: {sol.message}")
    return torch.from_numpy(sol.y[:, -1]).reshape(shape)


def solve_to(denoiser, x, sigmas: torch.Tensor, solver: str, **options) -> torch.Tensor:
    """Run ``solver`` on ``sigmas`` (ending in [..., σ_end, 0]) and return x at σ_end, i.e. the
    state before the final jump to 0, so errors are measured where the ODE is still an ODE."""
    states = {}

    def cb(info):
        states[int(info["i"])] = info["x"]

    sample(denoiser, x, sigmas, solver=solver, callback=cb, **options)
    return states[len(sigmas) - 3]


def convergence_order(denoiser, x: torch.Tensor, solver: str, steps: Sequence[int] = (8, 16, 32, 64),
                      sigma_max: float = 20.0, sigma_end: float = 0.1, schedule: str = "exponential",
                      reference: torch.Tensor | None = None, **options) -> tuple[float, list[float]]:
    """Measured order p of ``solver``: errors at σ_end for each step count on a ``schedule``
    grid from σ_max, fitted as log(err) = p log(1/n) + c. Returns (p, errors)."""
    x = x.double()
    if reference is None:
        reference = reference_solve(denoiser, x, sigma_max, sigma_end)
    errs = []
    for n in steps:
        sig = timesteps.get(schedule, n, _Range(sigma_end, sigma_max))
        sig = torch.cat([sig[:-1], sig.new_zeros(1)])   # [..., σ_end, 0]
        xn = solve_to(denoiser, x, sig, solver, **options)
        errs.append(float((xn - reference).pow(2).mean().sqrt()))
    p = -np.polyfit(np.log(np.asarray(steps, float)), np.log(errs), 1)[0]
    return float(p), errs


class _Range:
    """A stand-in process carrying only a σ range, for schedules defined by it."""

    def __init__(self, lo, hi):
        self.sigma_min, self.sigma_max = lo, hi
