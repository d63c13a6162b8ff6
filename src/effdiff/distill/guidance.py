"""Guidance distillation (Meng et al. 2023, stage one): a student with a guidance-scale input
reproduces classifier-free guidance D_u + w (D_c - D_u) in one forward pass, for w in
[w_min, w_max]. The w-embedding is zero at init, so the student starts as the teacher's
conditional branch. Regression on noised data at the teacher's training noise density,
max(SNR, 1)-weighted in x0 (as progressive distillation, which the paper's stage two adds).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..denoisers import append_dims
from ..objectives import DENSITIES
from . import student as S
from .loop import Method, method
from .losses import snr_trunc_mse
from .ode import guided_x0

Tensor = torch.Tensor


@dataclass
class GuidanceConfig:
    w_min: float = 1.0
    w_max: float = 4.0
    density: str = "uniform"          # an objectives.DENSITIES name (the teacher's training density)
    density_args: dict | None = None
    default_w: float = 2.0            # the scale used when none is passed
    sample_steps: int = 8

    def __post_init__(self):
        if not 0 <= self.w_min <= self.w_max:
            raise ValueError(f"need 0 <= w_min <= w_max, got {self.w_min}, {self.w_max}")
        if self.density not in DENSITIES:
            raise ValueError(f"unknown density {self.density!r}; known: {', '.join(DENSITIES)}")


@method("guidance")
class GuidanceDistillation(Method):
    Config = GuidanceConfig

    def spec(self) -> S.StudentSpec:
        return S.StudentSpec("guidance", "ddim", self.c.sample_steps, w_embed=True, guidance=self.c.default_w)

    def loss(self, student, x0, y, gen) -> Tensor:
        c, B = self.c, x0.shape[0]
        if y is None:
            raise ValueError("guidance distillation needs a class-conditional teacher")
        sigma = DENSITIES[c.density](self.teacher.process, B, gen, **(c.density_args or {}))
        w = c.w_min + (c.w_max - c.w_min) * torch.rand(B, generator=gen, dtype=torch.float64)
        x = x0 + append_dims(sigma.to(x0.dtype), x0) * torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
        with torch.no_grad():
            target = guided_x0(self.teacher, x, sigma.to(x0.dtype), y, w.to(x0.dtype))
        return snr_trunc_mse(student(x, sigma.to(x0.dtype), y, w=w), target, sigma)
