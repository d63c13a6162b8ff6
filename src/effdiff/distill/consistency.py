"""Consistency distillation (CD) and consistency training (CT) (Song et al. 2023) with the improved
recipe (iCT, Song & Dhariwal 2023; ECT, Geng et al. 2024): pseudo-Huber metric, lognormal
sampling of the discretization index, a step-count curriculum (N doubles in equal stages from
``n_start`` to ``n_end``), λ(σ_i) = 1 / (σ_{i+k} - σ_i), and no EMA target by default
(θ⁻ = stop-grad θ; ``ema_target`` > 0 gives CD's EMA target network instead). The student is
initialised from the teacher (ECT) in the consistency parameterization, f(x, σ_min) = x.

On the Karras grid σ_0 = σ_min < ... < σ_{N-1} = σ_max the loss pairs level i + k with level i:
    CD: x̂_i = teacher ODE step (DDIM or Heun) from x_{i+k} = x0 + σ_{i+k} z down to σ_i;
    CT: x̂_i = x0 + σ_i z (same z: the one-sample estimate of the ODE step, no teacher);
    L = λ d(f_θ(x_{i+k}, σ_{i+k}), f_θ⁻(x̂_i, σ_i)).
``guidance=(w_min, w_max)`` is LCM (Luo et al. 2023): the teacher step uses CFG at a per-sample w
~ U[w_min, w_max], the student takes w through its w-embedding; ``skip`` = k is LCM's skipping step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import timesteps
from ..denoisers import append_dims
from . import student as S
from .loop import Method, method
from .losses import pseudo_huber
from .ode import ode_step

Tensor = torch.Tensor


@dataclass
class ConsistencyConfig:
    teacher_ode: bool = True     # CD (True) or CT (False)
    order: int = 2               # teacher ODE step: 1 DDIM, 2 Heun
    metric: str = "pseudo-huber"  # or "l2"
    ema_target: float = 0.0      # μ of θ⁻ (0: θ⁻ = stop-grad θ, iCT)
    n_start: int = 10            # curriculum: discretization steps N at the start ...
    n_end: int = 80              # ... and at the end (doubling)
    rho: float = 7.0
    p_mean: float = -1.1         # lognormal over σ_i (iCT)
    p_std: float = 2.0
    skip: int = 1                # k: the level pairs (i, i + k) (LCM's skipping step)
    sample_steps: int = 2        # the exported student's default step count
    guidance: tuple | None = None    # (w_min, w_max): LCM-style guided distillation
    sigma_data: float = 0.5
    boundary_scale: float = 10.0

    def __post_init__(self):
        if self.metric not in ("pseudo-huber", "l2"):
            raise ValueError(f"metric must be 'pseudo-huber' or 'l2', got {self.metric!r}")
        if not 1 <= self.n_start <= self.n_end or self.skip < 1 or not 0 <= self.ema_target < 1:
            raise ValueError("need 1 <= n_start <= n_end, skip >= 1 and 0 <= ema_target < 1")
        if self.guidance is not None:
            self.guidance = tuple(float(w) for w in self.guidance)


def curriculum(step: int, total: int, n_start: int, n_end: int) -> int:
    """iCT's N(k): n_start doubled in equal stages up to n_end (Song & Dhariwal 2023, eq. 5)."""
    stages = int(math.log2(n_end / n_start)) + 1
    return min(n_start * 2 ** (step * stages // max(total, 1)), n_end)


def level_probs(sigmas: Tensor, skip: int, p_mean: float, p_std: float) -> Tensor:
    """p(i) ∝ erf((ln σ_{i+k} - P_mean)/(√2 P_std)) - erf((ln σ_i - P_mean)/(√2 P_std)) (iCT)."""
    cdf = torch.erf((sigmas.log() - p_mean) / (math.sqrt(2) * p_std))
    p = (cdf[skip:] - cdf[:-skip]).clamp_min(1e-12)
    return p / p.sum()


@method("consistency")
class Consistency(Method):
    Config = ConsistencyConfig

    def spec(self) -> S.StudentSpec:
        c = self.c
        w = c.guidance is not None
        return S.StudentSpec("lcm" if w else ("cd" if c.teacher_ode else "ct"), "consistency", c.sample_steps,
                             boundary=True, sigma_data=c.sigma_data, boundary_scale=c.boundary_scale,
                             w_embed=w, guidance=(sum(c.guidance) / 2 if w else 1.0))

    def setup(self, trainer) -> None:
        if self.c.ema_target > 0:
            self.extras["target"] = self.frozen(trainer.net)

    def after_step(self, trainer) -> None:
        if self.c.ema_target > 0:
            with torch.no_grad():
                for t, p in zip(self.extras["target"].parameters(), trainer.net.parameters()):
                    t.lerp_(p, 1 - self.c.ema_target)

    def levels(self, step: int) -> Tensor:
        """The Karras grid σ_min ... σ_max (ascending) of the current curriculum stage."""
        c, proc = self.c, self.teacher.process
        n = curriculum(step, self.cfg.steps, c.n_start, c.n_end)
        hi = float(S.grid(proc, 1)[0])
        return timesteps.karras(n + 1, proc.sigma_min, hi, c.rho)[:-1].flip(0)

    def loss(self, student, x0, y, gen) -> Tensor:
        c, B = self.c, x0.shape[0]
        sig = self.levels(self._step)
        k = min(c.skip, len(sig) - 1)
        i = torch.multinomial(level_probs(sig, k, c.p_mean, c.p_std), B, replacement=True, generator=gen)
        s, s_next = sig[i], sig[i + k]                          # s < s_next
        w = None
        if c.guidance is not None:
            lo, hi = c.guidance
            w = lo + (hi - lo) * torch.rand(B, generator=gen, dtype=torch.float64)
        z = torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
        x_next = x0 + append_dims(s_next.to(x0.dtype), x0) * z
        with torch.no_grad():
            if c.teacher_ode:
                x_hat = ode_step(self.teacher, x_next, s_next, s, y, None if w is None else w.float(), c.order)
            else:
                x_hat = x0 + append_dims(s.to(x0.dtype), x0) * z
            target_net = self.extras.get("target", student)
            target = target_net(x_hat, s, y, w=w) if w is not None else target_net(x_hat, s, y)
        pred = student(x_next, s_next, y, w=w) if w is not None else student(x_next, s_next, y)
        lam = (1 / (s_next - s)).to(x0.dtype)
        d = pseudo_huber(pred, target) if c.metric == "pseudo-huber" else ((pred - target) ** 2).flatten(1).mean(1)
        return lam * d

    def before_step(self, trainer) -> None:
        self._step = trainer.step
