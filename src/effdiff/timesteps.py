"""Sampling schedules: pure functions returning a decreasing float64 σ tensor ending in 0.

σ is the VE-form noise level of the denoiser contract, so a schedule is model-agnostic; the
ones defined in a process's own time (uniform-t, quadratic) take the process.
"""
from __future__ import annotations

import math

import torch

from .process import Process

Tensor = torch.Tensor


def _n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of steps must be a positive integer, got {n!r}")
    return n


def _range(sigma_min, sigma_max):
    if not (0 < sigma_min < sigma_max) or not math.isfinite(sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    return float(sigma_min), float(sigma_max)


def append_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas.to(torch.float64), sigmas.new_zeros(1, dtype=torch.float64)])


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. 2022, eq. 5: σ_i = (σmax^(1/ρ) + i/(n-1) (σmin^(1/ρ) - σmax^(1/ρ)))^ρ."""
    n, (lo, hi) = _n(n), _range(sigma_min, sigma_max)
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    return append_zero((hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho)


def exponential(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """σ uniform in log: equally spaced in the half log-SNR λ = -log σ."""
    n, (lo, hi) = _n(n), _range(sigma_min, sigma_max)
    return append_zero(torch.exp(torch.linspace(math.log(hi), math.log(lo), n, dtype=torch.float64)))


def logsnr_uniform(n: int, process: Process | None = None, sigma_min: float | None = None,
                   sigma_max: float | None = None) -> Tensor:
    """Uniform in log-SNR (Lu et al. 2022, DPM-Solver's 'logSNR' spacing) over the process's
    σ range (or the one given). In the VE-form contract this is ``exponential``."""
    lo = sigma_min if sigma_min is not None else process.sigma_min
    hi = sigma_max if sigma_max is not None else process.sigma_max
    return exponential(n, lo, hi)


def _in_t(n: int, process: Process, ramp: Tensor, t_min, t_max) -> Tensor:
    t_min = process.t_min if t_min is None else t_min
    t_max = process.t_max if t_max is None else t_max
    if not process.t_min <= t_min < t_max <= process.t_max:
        raise ValueError(f"t range [{t_min}, {t_max}] outside the process's [{process.t_min}, {process.t_max}]")
    t = t_max + ramp * (t_min - t_max)
    return append_zero(process.t_to_sigma(t))


def uniform_t(n: int, process: Process, t_min: float | None = None, t_max: float | None = None) -> Tensor:
    """n times equally spaced in the process's own t from t_max to t_min (DDIM's 'uniform'
    skip on a discrete VP, a uniform grid in t for flow models)."""
    n = _n(n)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    return _in_t(n, process, ramp, t_min, t_max)


def quadratic(n: int, process: Process, t_min: float | None = None, t_max: float | None = None) -> Tensor:
    """Times quadratically spaced, denser at low noise (Song et al. 2021, DDIM's 'quad')."""
    n = _n(n)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    return _in_t(n, process, 1 - (1 - ramp) ** 2, t_min, t_max)


def full(process: Process) -> Tensor:
    """Every step of a discrete process's table, from the last to the first (DDPM's 1000 steps)."""
    if not getattr(process, "discrete", False):
        raise ValueError("full() needs a discrete process; use uniform_t(n, process) for continuous ones")
    return append_zero(process.t_to_sigma(torch.arange(process.num_steps - 1, -1, -1, dtype=torch.float64)))


SCHEDULES = {"karras": karras, "exponential": exponential, "logsnr": logsnr_uniform,
             "uniform": uniform_t, "quadratic": quadratic}


def get(name: str, n: int, process: Process, **kw) -> Tensor:
    """A schedule by name over the process's σ range: ``get("karras", 10, process)``."""
    if name not in SCHEDULES:
        raise KeyError(f"unknown schedule {name!r}; known schedules: {', '.join(SCHEDULES)}")
    if name in ("uniform", "quadratic", "logsnr"):
        return SCHEDULES[name](n, process, **kw)
    kw.setdefault("sigma_min", process.sigma_min)
    kw.setdefault("sigma_max", process.sigma_max)
    return SCHEDULES[name](n, **kw)
