"""Any interpolant ``x_t = alpha(t) x0 + sigma(t) eps`` as an effdiff process (stochastic
interpolants, Albergo & Vanden-Eijnden 2023): the trigonometric path
``alpha = sin(pi t / 2), sigma = cos(pi t / 2)``, a linear path, or any other pair of torch functions
of the network's own time t, running either way (t = 1 data or t = 0 data)."""
from __future__ import annotations

from typing import Callable

import torch

from ..process import Process, _t

Tensor = torch.Tensor


class Interpolant(Process):
    """``alpha(t)`` (data coefficient) and ``sigma(t)`` (noise coefficient) on ``t_range``, both torch
    functions of a float64 tensor. The process time u runs from data to noise (σ = sigma/alpha
    increasing); ``model_time(u)`` is the network's t (u itself, or mirrored when t = 1 is data)."""

    name = "interpolant"

    def __init__(self, alpha: Callable, sigma: Callable, t_range: tuple = (0.0, 1.0), margin: tuple = (1e-4, 1e-3)):
        lo, hi = (float(v) for v in t_range)
        if not lo < hi:
            raise ValueError(f"t_range must be increasing, got {t_range}")
        self._alpha, self._sigma, self.lo, self.hi = alpha, sigma, lo, hi
        grid = torch.linspace(lo, hi, 1001, dtype=torch.float64)[1:-1]
        ve = self._ve(grid)
        if not torch.isfinite(ve).all() or (ve < 0).any():
            raise ValueError("sigma(t) / alpha(t) must be finite and >= 0 inside t_range")
        steps = ve.diff()
        self.reversed = bool((steps < 0).all())
        if not (self.reversed or (steps > 0).all()):
            raise ValueError("sigma(t) / alpha(t) must be strictly monotone in t (one end data, the other noise)")
        self.sign = -1.0 if self.reversed else 1.0
        self.t_min, self.t_max = lo + margin[0] * (hi - lo), hi - margin[1] * (hi - lo)

    def model_time(self, u) -> Tensor:
        """Process time u (σ increasing) -> the network's own t."""
        u = _t(u)
        return self.lo + self.hi - u if self.reversed else u

    def _ve(self, t: Tensor) -> Tensor:
        return self._sigma(t) / self._alpha(t)

    def alpha(self, t) -> Tensor:
        return self._alpha(self.model_time(t))

    def sigma(self, t) -> Tensor:
        return self._sigma(self.model_time(t))

    def sigma_to_t(self, s) -> Tensor:
        """σ -> u by bisection in float64 (σ outside the range clamps to its ends)."""
        s = _t(s)
        a = torch.full_like(s, self.t_min)
        b = torch.full_like(s, self.t_max)
        for _ in range(60):
            m = (a + b) / 2
            below = self.t_to_sigma(m) < s
            a, b = torch.where(below, m, a), torch.where(below, b, m)
        return (a + b) / 2

    def config(self) -> dict:
        return {"name": self.name, "t_range": (self.lo, self.hi), "reversed": self.reversed}
