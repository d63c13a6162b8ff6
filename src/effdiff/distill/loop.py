"""The one student-training loop: ``training.Trainer`` (AdamW, EMA, atomic safetensors checkpoints,
bit-identical resume) with the network replaced by a ``Student`` and the loss by a method's.

A method (``progressive``, ``consistency``, ``guidance``, ``reflow``) registers a class with
``@method(name)``; it builds the student from the teacher, returns the per-sample loss on a data
batch, and may keep extra modules (a stage teacher, an EMA target) that are checkpointed beside
the student's weights, so a killed run resumes bit-identically::

    cfg = distill.config("progressive", "digits-unet", args={"start_steps": 16}, steps=1200)
    distill.DistillTrainer(cfg, "runs/pd-unet").run()        # --resume: .run(resume=True)
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import checkpoint as ckpt
from ..training.trainer import Trainer, TrainConfig, load_optimizer, machine, optimizer_tensors
from . import student as S

METHODS: dict[str, type] = {}


def method(name: str):
    """Register a distillation method class under ``name``."""
    def deco(cls):
        if name in METHODS:
            raise ValueError(f"distillation method {name!r} is registered twice")
        cls.name = name
        METHODS[name] = cls
        return cls
    return deco


@dataclass
class DistillConfig(TrainConfig):
    """A ``TrainConfig`` plus the method, the teacher (zoo name or exported model path) and the
    method's own config fields (``args``)."""
    method: str = "progressive"
    teacher: str = "digits-unet"
    args: dict = field(default_factory=dict)


class Counted(nn.Module):
    """A teacher whose per-sample evaluations are counted (the distillation's teacher NFE)."""

    def __init__(self, denoiser):
        super().__init__()
        self.denoiser, self.calls = denoiser, 0
        self.process, self.cond_classes = denoiser.process, denoiser.cond_classes

    @property
    def null_class(self):
        return self.denoiser.null_class

    def forward(self, x, sigma, cond=None, **kw):
        self.calls += x.shape[0]
        return self.denoiser(x, sigma, cond, **kw)


def load_teacher(name: str):
    """A teacher by zoo name or exported model path (a student's path loads the student)."""
    from .. import zoo
    if name in zoo.names():
        return zoo.load(name)
    tensors, meta = ckpt.load(Path(name))
    if "student" in meta:
        return S.from_meta(tensors, meta, where=name)
    return zoo.from_checkpoint(Path(name))


def teacher_meta(teacher) -> dict:
    """The teacher's exported metadata (its student's ``meta`` for a student teacher)."""
    meta = getattr(teacher, "meta", None)
    if meta is None:
        raise ValueError("the teacher has no export metadata (.meta); load it with distill.load_teacher")
    return meta


def config(method_name: str, teacher="digits-unet", args: dict | None = None, **fields) -> DistillConfig:
    """A ``DistillConfig`` whose architecture, process and prediction are the teacher's (a zoo name,
    a model path, or a loaded denoiser with ``.meta``; then pass it to ``DistillTrainer(teacher=)``)."""
    if method_name not in METHODS:
        raise KeyError(f"unknown distillation method {method_name!r}; known: {', '.join(sorted(METHODS))}")
    meta = teacher_meta(load_teacher(teacher) if isinstance(teacher, str) else teacher)
    name = teacher if isinstance(teacher, str) else meta.get("name", "custom")
    base = dict(name=f"distill-{method_name}", arch=meta["arch"], model=meta["model"], process=meta["process"],
                prediction=meta["prediction"], lr=2e-4, warmup=50, ema_decay=0.995, batch_size=64,
                ckpt_every=100)
    return DistillConfig(**{**base, **fields}, method=method_name, teacher=name, args=dict(args or {}))


class Method:
    """Base of a distillation method: ``student(teacher)``, ``loss(student, x0, y, gen) -> [B]``;
    ``extras`` (name -> module) and ``optimizers`` (name -> optimizer over an extra's parameters)
    are checkpointed; hooks run before and after every step."""
    name = "method"
    Config: type = dataclass(type("Empty", (), {}))
    run_entries: tuple[str, ...] = ()      # what it writes into the run folder (--overwrite removes them)

    def __init__(self, args: dict, teacher, cfg: DistillConfig):
        try:
            self.c = self.Config(**args)
        except TypeError as e:
            raise TypeError(f"{self.name}: bad args {sorted(args)}: {e}") from None
        self.teacher, self.cfg = Counted(teacher), cfg
        self.extras: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    def spec(self) -> S.StudentSpec:
        raise NotImplementedError

    def student(self) -> S.Student:
        """A fresh student from the teacher (a student teacher lends its inner denoiser)."""
        t = self.teacher.denoiser
        return S.from_teacher(t.denoiser if isinstance(t, S.Student) else t, self.spec())

    def frozen(self, source: nn.Module) -> S.Student:
        """A frozen student holding ``source``'s weights (a stage teacher, a target network)."""
        out = self.student()
        out.load_state_dict(source.state_dict())
        return out.requires_grad_(False).eval()

    def loss(self, student, x0, y, gen) -> torch.Tensor:
        raise NotImplementedError

    def setup(self, trainer: "DistillTrainer") -> None:
        """Create ``extras`` once the trainer's student exists."""

    def start(self, trainer: "DistillTrainer") -> None:
        """Work in the run folder before the first step, once it is checked and locked (teacher pairs)."""

    def before_step(self, trainer: "DistillTrainer") -> None:
        pass

    def after_step(self, trainer: "DistillTrainer") -> None:
        pass

    def lr_at(self, trainer: "DistillTrainer", step: int) -> float:
        return Trainer.lr_at(trainer, step)

    def card(self) -> dict:
        """Entries the method adds to its students' cards (e.g. what its teacher pairs cost)."""
        return {}


class DistillTrainer(Trainer):
    """``Trainer`` whose ``net`` / ``ema`` are ``Student``s trained with ``METHODS[config.method]``."""

    def __init__(self, config: DistillConfig, run_dir, progress: bool = True, teacher=None):
        if not isinstance(config, DistillConfig):
            raise TypeError(f"DistillTrainer needs a DistillConfig, got {type(config).__name__}")
        if config.method not in METHODS:
            raise KeyError(f"unknown distillation method {config.method!r}; known: {', '.join(sorted(METHODS))}")
        super().__init__(config, run_dir, progress)
        teacher = load_teacher(config.teacher) if teacher is None else teacher
        self.arch = teacher_meta(teacher)["arch"]
        self.method = METHODS[config.method](config.args, teacher.eval().requires_grad_(False), config)
        torch.manual_seed(config.seed)
        self.net = self.method.student()
        self.ema = self.method.student()
        self.ema.load_state_dict(self.net.state_dict())
        self.ema.requires_grad_(False)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.method.setup(self)

    def prepare(self, resume: bool = False, overwrite: bool = False) -> None:
        """The run folder checked and locked (``Trainer.prepare``; ``overwrite`` also drops what the method
        wrote there, e.g. teacher pairs), then the method's own preparation (``Method.start``)."""
        super().prepare(resume, overwrite)
        if overwrite:
            for name in self.method.run_entries:
                shutil.rmtree(self.dir / name, ignore_errors=True)
        self.method.start(self)

    # ---- one step: the method's loss on the trainer's batch ---------------------------------
    def lr_at(self, step: int) -> float:
        return self.method.lr_at(self, step)

    def loss_on(self, x, y) -> torch.Tensor:
        if y is not None and self.num_classes > 0 and self.cfg.p_uncond > 0:
            drop = (torch.rand(y.shape, generator=self.gen) < self.cfg.p_uncond).to(y.device)
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        return self.method.loss(self.net, x, y if self.num_classes > 0 else None, self.gen).mean()

    def train_step(self) -> float:
        self.method.before_step(self)
        loss = super().train_step()
        self.method.after_step(self)
        return loss

    # ---- checkpoints: the trainer's, plus the method's extra modules and the teacher NFE ----
    def state(self) -> tuple[dict, dict]:
        t, meta = super().state()
        for name, mod in self.method.extras.items():
            t.update({f"extra.{name}.{k}": v for k, v in mod.state_dict().items()})
        for name, opt in self.method.optimizers.items():
            opt_t, groups = optimizer_tensors(opt, f"xopt.{name}.")
            t.update(opt_t)
            meta.setdefault("extra_param_groups", {})[name] = groups
        meta["teacher_nfe"] = self.method.teacher.calls
        return t, meta

    def restore(self) -> bool:
        if not super().restore():
            return False
        t, meta = ckpt.load(self.dir / "checkpoint")
        for name, mod in self.method.extras.items():
            ckpt.load_state(mod, t, f"extra.{name}.", where=str(self.dir / "checkpoint"))
        for name, opt in self.method.optimizers.items():
            load_optimizer(opt, t, f"xopt.{name}.", meta["extra_param_groups"][name])
        self.method.teacher.calls = int(meta.get("teacher_nfe", 0))
        return True

    def card(self, steps: int) -> dict:
        c = self.cfg
        return {"preset": c.name, "method": c.method, "teacher": c.teacher, "args": c.args, "seed": c.seed,
                "steps": self.step, "student_steps": steps, "batch_size": c.batch_size,
                "teacher_nfe": self.method.teacher.calls, "wall_time_s": round(self.elapsed, 1),
                "machine": machine(), "command": f"effdiff train --preset {c.name} --out DIR", "metrics": {},
                **self.method.card()}

    def save_student(self, name: str, module: S.Student | None = None) -> Path:
        """Export a student (default: the EMA) as ``run_dir/name.{safetensors,json}``."""
        st = module or self.ema
        S.save(st, self.dir / name, self.arch, self.card(st.spec.steps))
        return self.dir / name

    def export(self, metrics: dict | None = None) -> Path:
        """The final EMA student as ``model.*`` and ``student-<n>step.*``."""
        self.save_student(f"student-{self.ema.spec.steps}step")
        return self.save_student("model")


def distill(config: DistillConfig, run_dir, resume: bool = False, progress: bool = True,
            overwrite: bool = False) -> Path:
    """Train (or resume) a student and export it; returns the path stem of ``model.*``."""
    tr = DistillTrainer(config, run_dir, progress=progress)
    with tr.locked():                            # one hold of the run folder: run and export
        return tr.run(resume=resume, overwrite=overwrite).export()
