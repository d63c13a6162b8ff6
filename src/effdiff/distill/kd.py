"""Knowledge distillation of the sampler (Luhman & Luhman 2021), n steps trained end to end: the
student's own n-step DDIM solve from σ_max z is unrolled, gradients flowing through every step, and
its output regressed onto the teacher's ODE solution from the same z (teacher pairs, ``distill.pairs``,
made with the sampler the student should reproduce, e.g. the plan's reference heun/karras/40).

n = 1 is Luhman & Luhman's one-step student (InstaFlow's distillation without the reflow). For
n > 1 the loss is on the end point only, as in Watson et al.'s (2022) differentiable sampler search:
the intermediate states are free, so the student can spend its n evaluations however makes the
final sample right, where progressive distillation matches the teacher at every step of its grid.
Because the target is the teacher's sample *from the same noise*, a good student is close sample by
sample, which is what a paired comparison against that sampler rewards: its per-seed quality change
is small and tight, not just its mean.

``init`` starts the student from a distilled student's weights (e.g. a progressive one of the same
step count) instead of the teacher's; the pairs always come from the teacher.

    cfg = distill.config("kd", "digits-unet", {"steps": 2, "init": "digits-unet-pd-2step",
                         "pairs_n": 32768, "pairs_solver": "heun", "pairs_schedule": "karras",
                         "pairs_steps": 40}, steps=4000, batch_size=64, lr=1e-4)   # the preset digits-unet-kd-2step
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import pairs as P
from . import student as S
from .loop import Method, load_teacher, method
from .losses import pseudo_huber
from .ode import ddim_to

Tensor = torch.Tensor
LOSSES = ("l2", "pseudo-huber")


@dataclass
class KDConfig:
    steps: int = 1                     # the student's DDIM steps on its grid (``distill.grid``)
    init: str = ""                     # a student (zoo name / path) to start from ("": the teacher)
    prediction: str | None = None      # output parameterization (None: init's, else the teacher's)
    loss: str = "l2"                   # "l2" (mean squared error per sample) or "pseudo-huber"
    pairs: str = ""                    # a distill.pairs directory ("": the run's own run_dir/pairs)
    pairs_n: int = 0                   # > 0: generate missing pairs first (resumable)
    pairs_solver: str = "heun"         # the sampler the pairs are made with: the one to reproduce
    pairs_schedule: str = "karras"
    pairs_steps: int = 40

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"kd: steps must be a positive integer, got {self.steps!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"kd: loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not self.pairs and self.pairs_n <= 0:
            raise ValueError("kd needs pairs=DIR (make them with distill.pairs.generate) or pairs_n > 0")


def unroll(student, z: Tensor, cond=None, steps: int | None = None) -> Tensor:
    """The student's DDIM solve from σ_max z on its grid, differentiable (``ed.sample`` runs without
    gradients); the same samples as ``ed.sample(student, z σ_max, student.grid(), "ddim", cond)``."""
    g = student.grid(steps).to(z.dtype)
    x = z * g[0]
    for i in range(len(g) - 1):
        s = g[i].expand(len(z))
        x = ddim_to(x, student(x, s, cond), s, g[i + 1].expand(len(z)))
    return x


@method("kd")
class KD(Method):
    Config = KDConfig
    run_entries = (P.RUN_PAIRS,)

    def __init__(self, args, teacher, cfg):
        super().__init__(args, teacher, cfg)
        self.z = self.x = self.y = None
        self.pairs_info: dict = {}
        self._init = None
        if self.c.init:
            init = load_teacher(self.c.init)
            if not isinstance(init, S.Student):
                raise TypeError(f"kd: init={self.c.init!r} is not a distilled student")
            self._init = init

    def spec(self) -> S.StudentSpec:
        return S.StudentSpec("kd", "ddim", self.c.steps)

    def student(self) -> S.Student:
        t = self.teacher.denoiser
        base = t.denoiser if isinstance(t, S.Student) else t
        pred = self.c.prediction or (self._init.prediction if self._init is not None else None)
        out = S.from_teacher(base, self.spec(), pred)
        if self._init is not None:
            out.denoiser.net.load_state_dict(self._init.denoiser.net.state_dict())
        return out

    def start(self, trainer) -> None:
        """The pairs, generated (inside the run folder unless ``pairs`` names one) and loaded."""
        self.z, self.x, self.y = P.for_run(self.teacher.denoiser, self.c.pairs, self.c.pairs_n, self.cfg.seed,
                                           self.cfg.teacher, trainer.dir, trainer.progress,
                                           solver=self.c.pairs_solver, schedule=self.c.pairs_schedule,
                                           steps=self.c.pairs_steps)
        info = P.manifest(P.run_pairs(self.c.pairs, trainer.dir))
        self.pairs_info = {"pairs": info["config"], "pairs_teacher_nfe": info["teacher_nfe"]}

    def card(self) -> dict:
        """The pairs and their cost; ``teacher_nfe`` counts them (KD calls no teacher while it trains)."""
        return {**self.pairs_info, "teacher_nfe": self.teacher.calls + self.pairs_info.get("pairs_teacher_nfe", 0)}

    def loss(self, student, x0, y, gen) -> Tensor:
        idx = torch.randint(0, len(self.x), (x0.shape[0],), generator=gen)
        z, x, y = self.z[idx], self.x[idx], None if self.y is None else self.y[idx]
        out = unroll(student, z, y)
        if self.c.loss == "pseudo-huber":
            return pseudo_huber(out, x)
        return ((out - x) ** 2).flatten(1).mean(1)
