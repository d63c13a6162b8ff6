"""Progressive distillation (Salimans & Ho 2022, Alg. 2): a student learns to take in one DDIM step
what its teacher takes in two; the student becomes the next teacher and the step count halves,
``start_steps -> ... -> end_steps``. One stage is ``stage_steps`` optimizer steps; the learning
rate decays linearly to 0 within each stage, as in the paper.

The student's target x̃ makes its DDIM step from σ_i to σ_{i+2} land where the teacher's two DDIM
steps land: x'' = x̃ + (σ_{i+2}/σ_i)(x - x̃)  =>  x̃ = (x'' - r x) / (1 - r), r = σ_{i+2}/σ_i
(x̃ = x'' at the final step to σ = 0). Loss: max(SNR, 1) ||x̂0 - x̃||² ('truncated SNR').
The paper trains in the v (or x0) parameterization: eps-prediction cannot jump from σ_max in
one step (x0 = x - σ ε amplifies the error σ_max times), so ``prediction="v"`` for eps teachers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import student as S
from .loop import Method, method
from .losses import snr_trunc_mse
from ..denoisers import append_dims
from .ode import ode_step

Tensor = torch.Tensor


@dataclass
class ProgressiveConfig:
    start_steps: int = 16        # the teacher's DDIM steps on the student grid the first stage halves
    end_steps: int = 1
    stage_steps: int = 300       # optimizer steps per halving
    prediction: str | None = None    # student output parameterization (None: the teacher's)
    order: int = 1               # teacher step: 1 DDIM (the paper), 2 Heun

    def __post_init__(self):
        if self.start_steps < 2 or self.end_steps < 1 or self.start_steps & (self.start_steps - 1) \
                or self.end_steps & (self.end_steps - 1) or self.end_steps >= self.start_steps:
            raise ValueError(f"need powers of two start_steps > end_steps >= 1, got {self.start_steps}, {self.end_steps}")

    @property
    def stages(self) -> int:
        return int(math.log2(self.start_steps // self.end_steps))


def pd_target(teacher, x: Tensor, sigma: Tensor, sigma_mid: Tensor, sigma_next: Tensor, cond=None,
              order: int = 1) -> Tensor:
    """x̃ such that one student DDIM step σ -> σ'' equals two teacher steps σ -> σ_mid -> σ''."""
    x2 = ode_step(teacher, ode_step(teacher, x, sigma, sigma_mid, cond, order=order), sigma_mid, sigma_next,
                  cond, order=order)
    r = (sigma_next / sigma).to(x.dtype).reshape(-1, *[1] * (x.ndim - 1))
    return (x2 - r * x) / (1 - r)


@method("progressive")
class Progressive(Method):
    Config = ProgressiveConfig

    def __init__(self, args, teacher, cfg):
        super().__init__(args, teacher, cfg)
        need = self.c.stages * self.c.stage_steps
        if cfg.steps != need:
            raise ValueError(f"progressive: steps must be stages x stage_steps = {self.c.stages} x "
                             f"{self.c.stage_steps} = {need}, got {cfg.steps}")
        self.original = self.teacher.denoiser

    def stage(self, step: int) -> int:
        return min(step // self.c.stage_steps, self.c.stages - 1)

    def steps_at(self, stage: int) -> int:
        """The student's step count in ``stage`` (the teacher takes twice as many)."""
        return self.c.start_steps >> (stage + 1)

    def spec(self) -> S.StudentSpec:
        return S.StudentSpec("progressive", "ddim", self.c.end_steps)

    def student(self) -> S.Student:
        t = self.original
        return S.from_teacher(t.denoiser if isinstance(t, S.Student) else t, self.spec(), self.c.prediction)

    def setup(self, trainer) -> None:
        self.extras["stage_teacher"] = self.frozen(trainer.net)

    def _set_stage(self, trainer, stage: int) -> None:
        trainer.net.spec.steps = trainer.ema.spec.steps = self.steps_at(stage)
        self.teacher.denoiser = self.original if stage == 0 else self.extras["stage_teacher"]

    def before_step(self, trainer) -> None:
        """At a stage boundary: export the stage's EMA student, make it the next teacher."""
        step, L = trainer.step, self.c.stage_steps
        stage = self.stage(step)
        if step > 0 and step % L == 0 and step // L <= self.c.stages - 1:
            self._set_stage(trainer, stage - 1)
            trainer.save_student(f"student-{self.steps_at(stage - 1)}step")
            self.extras["stage_teacher"].load_state_dict(trainer.ema.state_dict())
            trainer.net.load_state_dict(trainer.ema.state_dict())
        self._set_stage(trainer, stage)

    def lr_at(self, trainer, step: int) -> float:
        """Warm-up, then linear decay to 0 within each stage (Salimans & Ho 2022, App. E)."""
        c, s = trainer.cfg, step % self.c.stage_steps
        return c.lr * min(1.0, (s + 1) / max(1, c.warmup)) * (1 - s / self.c.stage_steps)

    def loss(self, student, x0, y, gen) -> Tensor:
        n = student.spec.steps
        fine = S.grid(self.teacher.process, 2 * n)                 # the teacher's grid; student's = fine[::2]
        i = torch.randint(0, n, (x0.shape[0],), generator=gen)
        sigma, mid, nxt = fine[2 * i], fine[2 * i + 1], fine[2 * i + 2]
        eps = torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
        x = x0 + append_dims(sigma.to(x0.dtype), x0) * eps
        with torch.no_grad():
            target = pd_target(self.teacher, x, sigma, mid, nxt, y, self.c.order)
        return snr_trunc_mse(student(x, sigma, y), target, sigma)
