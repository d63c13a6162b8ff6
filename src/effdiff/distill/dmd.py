"""Distribution matching distillation (DMD: Yin et al. 2024, "One-step Diffusion with Distribution
Matching Distillation"; DMD2: Yin et al. 2024, "Improved Distribution Matching Distillation for Fast
Image Synthesis").

A generator G (a copy of the teacher, 1 step from σ_max; or n steps with DMD2's backward
simulation) is trained to minimise KL(p_G || p_data). Its gradient at a sample x = G(z) is the
difference of two scores at a randomly noised copy x_t = x + σ ε; in x0 terms (s = (D - x_t)/σ²)

    ∇_x KL ∝ (D_fake(x_t, σ) - D_real(x_t, σ)) / mean|x - D_real(x_t, σ)|       (DMD eq. 7-8)

D_real is the frozen teacher (classifier-free guidance at w baked in); D_fake is a second copy of
the teacher trained online with the teacher's own denoising loss on G's samples, ``fake_updates``
times per generator step (DMD2's two time-scale update rule, 5 by default). The gradient enters
through the surrogate 0.5 ||x - sg(x - g)||² (its gradient in x is g). Optional: DMD's regression
loss ||G(σ_max z) - x_teacher(z)||² on teacher (noise, sample) pairs (``distill.pairs``; L2 here,
the paper uses LPIPS). Not implemented: DMD2's GAN term on real data.

Multi-step (``steps`` = n > 1, DMD2 Sec. 4.3): G is trained at each level σ_i of the student grid
on inputs made by G itself — from σ_0 z, i steps of x0 = G(x, σ_j), x = x0 + σ_{j+1} ε' (no
gradient) — and sampled the same way (the ``consistency`` solver: x0, then fresh noise).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..denoisers import append_dims
from ..objectives import DENSITIES, DiffusionLoss, LossConfig
from . import pairs as P
from . import student as S
from .loop import Method, method
from .ode import guided_x0

Tensor = torch.Tensor


@dataclass
class DMDConfig:
    steps: int = 1                    # generator steps (> 1: DMD2's backward simulation)
    fake_updates: int = 5             # k: fake-score updates per generator step (DMD2's TTUR)
    fake_lr: float | None = None      # fake-score learning rate (None: the generator's ``lr``)
    fake_betas: tuple = (0.0, 0.999)  # DMD2's Adam betas for the fake score
    guidance: float = 1.0             # CFG scale w baked into the real score
    t_range: tuple = (0.02, 0.98)     # DM gradient: t uniform on this fraction of [t_min, t_max] (DMD)
    density: str = "uniform"          # the fake score's denoising loss: the teacher's training density
    density_args: dict | None = None
    prediction: str | None = None     # generator output parameterization (None: the teacher's)
    regression: float = 0.0           # λ_reg of DMD's regression loss (0: off, as DMD2)
    pairs: str = ""                   # a distill.pairs directory ("": the run's own run_dir/pairs)
    pairs_n: int = 0                  # > 0: generate missing pairs first (resumable)

    def __post_init__(self):
        if self.steps < 1 or self.fake_updates < 0 or self.regression < 0:
            raise ValueError(f"need steps >= 1, fake_updates >= 0, regression >= 0; got {self.steps}, "
                             f"{self.fake_updates}, {self.regression}")
        lo, hi = (float(v) for v in self.t_range)
        if not 0 <= lo < hi <= 1:
            raise ValueError(f"t_range must be 0 <= lo < hi <= 1, got {self.t_range}")
        self.t_range, self.fake_betas = (lo, hi), tuple(float(b) for b in self.fake_betas)
        if self.density not in DENSITIES:
            raise ValueError(f"unknown density {self.density!r}; known: {', '.join(DENSITIES)}")
        if self.regression > 0 and not self.pairs and self.pairs_n <= 0:
            raise ValueError("dmd: regression > 0 needs pairs=DIR (teacher pairs, distill.pairs) or pairs_n > 0")


def dm_grad(x: Tensor, real, fake, sigma: Tensor, eps: Tensor, cond=None, w=None) -> Tensor:
    """DMD's generator gradient at G's samples ``x`` [B, ...]: (D_fake - D_real) / mean|x - D_real|
    at x_t = x + σ ε (σ [B]); zero where the fake score equals the real one."""
    with torch.no_grad():
        x_t = x + append_dims(sigma.to(x.dtype), x) * eps
        s = sigma.to(x.dtype)
        d_real = guided_x0(real, x_t, s, cond, w)
        d_fake = fake(x_t, s, cond)
        norm = (x - d_real).abs().flatten(1).mean(1).clamp_min(1e-12)
        return torch.nan_to_num((d_fake - d_real) / append_dims(norm, x))


def dm_loss(x: Tensor, grad: Tensor) -> Tensor:
    """0.5 mean((x - sg(x - g))²) per sample: its gradient in ``x`` is g / numel(x[0])."""
    return 0.5 * ((x - (x - grad).detach()) ** 2).flatten(1).mean(1)


def dm_sigma(process, n: int, gen: torch.Generator, t_range=(0.02, 0.98)) -> Tensor:
    """Noise levels of the DM gradient: t uniform on ``t_range`` of the process's [t_min, t_max]."""
    lo, hi = (process.t_min + f * (process.t_max - process.t_min) for f in t_range)
    return process.t_to_sigma(lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64))


@method("dmd")
class DMD(Method):
    Config = DMDConfig
    run_entries = (P.RUN_PAIRS,)

    def __init__(self, args, teacher, cfg):
        super().__init__(args, teacher, cfg)
        self.fake_loss = DiffusionLoss(LossConfig(self.c.density, self.c.density_args))
        self.z = self.x_pairs = self.y_pairs = None

    def start(self, trainer) -> None:
        """The regression pairs, generated (inside the run folder unless ``pairs`` names one) and loaded."""
        if self.c.regression > 0:
            self.z, self.x_pairs, self.y_pairs = P.for_run(self.teacher.denoiser, self.c.pairs, self.c.pairs_n,
                                                           self.cfg.seed, self.cfg.teacher, trainer.dir, trainer.progress)

    def spec(self) -> S.StudentSpec:
        return S.StudentSpec("dmd", "ddim" if self.c.steps == 1 else "consistency", self.c.steps)

    def student(self) -> S.Student:
        t = self.teacher.denoiser
        return S.from_teacher(t.denoiser if isinstance(t, S.Student) else t, self.spec(), self.c.prediction)

    def setup(self, trainer) -> None:
        """The fake score: a trainable copy of the teacher (its own parameterization) and its optimizer."""
        t = self.teacher.denoiser
        fake = S.from_teacher(t.denoiser if isinstance(t, S.Student) else t, S.StudentSpec("dmd-fake"))
        self.extras["fake"] = fake
        c = trainer.cfg
        self.optimizers["fake"] = torch.optim.AdamW(fake.parameters(), lr=self.c.fake_lr or c.lr,
                                                    betas=self.c.fake_betas, weight_decay=c.weight_decay)

    # ---- G's samples, with backward simulation for n > 1 ---------------------------------
    def labels(self, trainer, n: int):
        K = trainer.num_classes
        return torch.randint(0, K, (n,), generator=trainer.gen) if K > 0 else None

    def generate(self, G, shape, y, gen: torch.Generator, grad: bool) -> tuple[Tensor, Tensor]:
        """(x0 = G's sample, the level index it was made at): level i ~ U{0..n-1} reached by
        running G itself (DMD2's backward simulation); the last call keeps the graph if ``grad``."""
        sig = S.grid(self.teacher.process, self.c.steps)
        i = int(torch.randint(0, self.c.steps, (1,), generator=gen)) if self.c.steps > 1 else 0
        x = torch.randn(shape, generator=gen) * float(sig[0])
        with torch.no_grad():
            for j in range(i):
                x0 = G(x, sig[j].float().expand(shape[0]), y)
                x = x0 + torch.randn(shape, generator=gen) * float(sig[j + 1])
        with torch.enable_grad() if grad else torch.no_grad():
            return G(x, sig[i].float().expand(shape[0]), y), i

    # ---- two time-scales: k fake-score updates, then the generator's step -----------------
    def before_step(self, trainer) -> None:
        fake, opt, c = self.extras["fake"], self.optimizers["fake"], trainer.cfg
        fake.train()
        shape = (c.batch_size, *trainer.x.shape[1:])
        for _ in range(self.c.fake_updates):
            y = self.labels(trainer, shape[0])
            x0, _ = self.generate(trainer.net, shape, y, trainer.gen, grad=False)
            loss = self.fake_loss(fake.denoiser, x0.detach(), y, trainer.gen).mean()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"dmd: fake-score loss is {float(loss)} at step {trainer.step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if c.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(fake.parameters(), c.grad_clip)
            opt.step()
        fake.eval()

    def loss(self, student, x0, y, gen) -> Tensor:
        B, proc, c = x0.shape[0], self.teacher.process, self.c
        x, i = self.generate(student, x0.shape, y, gen, grad=True)
        sigma = dm_sigma(proc, B, gen, c.t_range)
        eps = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        w = c.guidance if c.guidance != 1.0 else None
        out = dm_loss(x, dm_grad(x, self.teacher, self.extras["fake"], sigma, eps, y, w))
        if c.regression > 0:
            idx = torch.randint(0, len(self.z), (B,), generator=gen)
            yp = None if self.y_pairs is None else self.y_pairs[idx]
            s0 = S.grid(proc, c.steps)[0].float().expand(B)
            pred = student(self.z[idx] * s0[0], s0, yp)
            out = out + c.regression * ((pred - self.x_pairs[idx]) ** 2).flatten(1).mean(1)
        return out
