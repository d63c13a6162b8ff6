"""Distillation: few-step students trained by effdiff from its own teachers (one file per method).

- ``progressive``: progressive distillation (Salimans & Ho 2022)
- ``consistency``: consistency distillation and training, improved recipe (Song et al. 2023;
  Song & Dhariwal 2023; Geng et al. 2024), with LCM-style guided distillation (Luo et al. 2023)
- ``guidance``: guidance distillation, one pass for CFG at scale w (Meng et al. 2023)
- ``reflow``: reflow on teacher pairs and its one-step distillation (Liu et al. 2023; InstaFlow)
- ``kd``: knowledge distillation of the sampler, the student's n-step solve unrolled and regressed
  onto the teacher's sample from the same noise (Luhman & Luhman 2021)
- ``dmd``: distribution matching distillation with a fake score trained online (Yin et al. 2024; DMD2)

A student is a denoiser (``Student``) with its grid and solver; ``pairs`` generates resumable
teacher (noise, sample) shards; ``loop`` is the one training loop (the trainer's checkpoints).
"""
from .student import Student, StudentSpec, AtScale, grid, load, save, from_teacher  # noqa: F401
from .loop import METHODS, DistillConfig, DistillTrainer, config, distill, load_teacher  # noqa: F401
from . import progressive, consistency, guidance, reflow, dmd, kd, pairs  # noqa: F401  (register the methods)

__all__ = ["Student", "StudentSpec", "AtScale", "grid", "load", "save", "from_teacher", "METHODS",
           "DistillConfig", "DistillTrainer", "config", "distill", "load_teacher"]
