"""Reflow (Liu et al. 2023, "Flow straight and fast") and its one-step distillation (InstaFlow,
Liu et al. 2024) on teacher pairs (``distill.pairs``).

In VE form every coupling (z, x) defines the straight path x_σ = x + σ z, along which the ideal
denoiser is x itself; 2-RF trains D(x + σ z, σ) -> x on the teacher's pairs (the same denoising
loss as the teacher's, with the independent noise replaced by the paired noise), which
straightens the probability-flow ODE. ``one_step=True`` is InstaFlow's distillation: regress the
single jump D(σ_max z, σ_max) -> x (L2 here; the paper uses LPIPS). ``straightness`` measures
S = Σ Δσ E||dx/dσ - (x_T - x_0)/σ_T||² / (σ_T E||(x_T - x_0)/σ_T||²) along a solve (0 = straight).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..denoisers import append_dims
from ..objectives import DENSITIES
from ..sampling import check_sigmas, sample
from . import pairs as P
from . import student as S
from .loop import Method, method
from .losses import snr_trunc_mse

Tensor = torch.Tensor


@dataclass
class ReflowConfig:
    pairs: str = ""                   # a distill.pairs directory ("": the run's own run_dir/pairs)
    one_step: bool = False            # InstaFlow's 1-step distillation instead of 2-RF
    density: str = "uniform"
    density_args: dict | None = None
    sample_steps: int = 4
    pairs_n: int = 0                  # > 0: generate missing pairs first (dpmpp-2m, 10 steps; resumable)

    def __post_init__(self):
        if not self.pairs and self.pairs_n <= 0:
            raise ValueError("reflow needs pairs=DIR (make them with distill.pairs.generate) or pairs_n > 0")


@method("reflow")
class Reflow(Method):
    Config = ReflowConfig
    run_entries = (P.RUN_PAIRS,)

    def __init__(self, args, teacher, cfg):
        super().__init__(args, teacher, cfg)
        self.z = self.x = self.y = None

    def start(self, trainer) -> None:
        """The pairs, generated (inside the run folder unless ``pairs`` names one) and loaded."""
        self.z, self.x, self.y = P.for_run(self.teacher.denoiser, self.c.pairs, self.c.pairs_n, self.cfg.seed,
                                           self.cfg.teacher, trainer.dir, trainer.progress)

    def spec(self) -> S.StudentSpec:
        return S.StudentSpec("instaflow" if self.c.one_step else "reflow", "ddim",
                             1 if self.c.one_step else self.c.sample_steps)

    def loss(self, student, x0, y, gen) -> Tensor:
        B = x0.shape[0]
        idx = torch.randint(0, len(self.x), (B,), generator=gen)
        z, x, y = self.z[idx], self.x[idx], None if self.y is None else self.y[idx]
        if self.c.one_step:
            sigma = S.grid(self.teacher.process, 1)[:1].expand(B)
        else:
            sigma = DENSITIES[self.c.density](self.teacher.process, B, gen, **(self.c.density_args or {}))
        xs = x + append_dims(sigma.to(x.dtype), x) * z
        return snr_trunc_mse(student(xs, sigma.to(x.dtype), y), x, sigma)


def straightness(denoiser, x_T: Tensor, sigmas, cond=None) -> float:
    """Liu et al.'s straightness of the Euler solve from x_T on ``sigmas`` (0 for a straight path)."""
    sig = check_sigmas(sigmas)
    slopes, prev = [], [x_T]

    def cb(info):
        i = info["i"]
        slopes.append((float(sig[i] - sig[i + 1]), (prev[0] - info["denoised"]) / float(sig[i])))
        prev[0] = info["x"]
    x0 = sample(denoiser, x_T, sig, "euler", cond, callback=cb)
    chord = (x_T - x0) / float(sig[0])
    dev = sum(d * ((v - chord) ** 2).flatten(1).sum(1).mean() for d, v in slopes)
    return float(dev / (float(sig[0]) * (chord ** 2).flatten(1).sum(1).mean()))
