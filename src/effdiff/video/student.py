"""A few-step video student: VideoLCM (Wang et al. 2023) — latent consistency distillation of a video
denoiser with a skipping-step teacher ODE solver, the student initialised from the teacher — run by
``effdiff.distill``'s own methods on moving-digit latent clips. This file is only the video glue:

- ``VideoDistillTrainer``: ``distill.DistillTrainer`` (the method's loss, EMA, atomic checkpoints,
  exact resume) fed random 16-frame windows of the encoded training clips (``VideoTrainer``'s batches),
  with all parameters or only the temporal adapters trained (``train=``);
- ``VideoStudent``: a ``VideoModel`` whose denoiser is the ``distill.Student`` (its grid, its solver);
- ``python -m effdiff.video.student --out DIR [--method consistency|progressive] [--resume]``.

The teacher is a zoo video model (``video-adapter``: flow, velocity prediction); any registered
``distill`` method runs (``consistency`` is VideoLCM's; ``progressive`` is Salimans & Ho 2022).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, replace

import torch

from .. import checkpoint as ckpt
from ..distill import student as S
from ..sampling import sample, solver_noise
from ..distill.loop import DistillConfig, DistillTrainer, config as distill_config
from .sampling import VideoModel
from .train import VideoLoss, VideoTrainer

TRAINED = ("all", "adapters")


def teacher_of(vm: VideoModel):
    """The video model's latent denoiser, carrying its export metadata (what ``distill`` reads)."""
    den = vm.den
    den.meta = vm.meta
    return den


class VideoDistillTrainer(DistillTrainer):
    """``DistillTrainer`` on moving-digit latent clips; ``train="adapters"`` freezes the image DiT."""
    _load_data = VideoTrainer._load_data
    batch = VideoTrainer.batch

    def __init__(self, config: DistillConfig, run_dir, teacher: VideoModel, train: str = "all",
                 frames: int = 16, clips: int = 4000, progress: bool = True):
        if train not in TRAINED:
            raise ValueError(f"train must be one of {TRAINED}, got {train!r}")
        self.vloss = VideoLoss(frames=frames, clips=clips)
        super().__init__(config, run_dir, progress, teacher=teacher_of(teacher))
        self.video, self.trained = teacher, train
        if train == "adapters":
            for st in (self.net, self.ema):
                st.denoiser.net.image.requires_grad_(False)
            self.opt = torch.optim.AdamW(self.trained_parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def trained_parameters(self) -> list:
        return [p for p in self.net.parameters() if p.requires_grad]

    def card(self, steps: int) -> dict:
        out = super().card(steps)
        out["trained"] = self.trained
        out["command"] = command(self.cfg, self.trained, self.step)
        return out

    def export(self, metrics: dict | None = None):
        """``model.*`` (the EMA student) with the teacher's ``video`` metadata and task ``video`` (not an image model
        to ``effdiff sample``): ``ed.zoo.load`` gives the ``distill.Student`` denoiser, ``load`` the ``VideoStudent``."""
        path = super().export(metrics)
        for stem in (path, self.dir / f"student-{self.ema.spec.steps}step"):
            tensors, meta = ckpt.load(stem)
            meta["video"], meta["task"] = self.video.meta["video"], "video"     # kind stays "student" (its keys imply it)
            ckpt.save(stem, tensors, meta)
        return path


class VideoStudent(VideoModel):
    """A distilled video student: ``generate`` runs its own solver on its own grid (``student.grid(steps)``)."""

    @property
    def student(self) -> S.Student:
        return self.den

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        c = self.den.denoiser.net.config
        return c.in_channels, c.frame_size, c.frame_size

    def grid(self, steps: int | None = None) -> torch.Tensor:
        return self.den.grid(steps)

    @torch.no_grad()
    def sample(self, noise: torch.Tensor, cond=None, steps: int | None = None, seed: int = 0,
               first: int = 0) -> torch.Tensor:
        """Latent clips from unit ``noise`` [N, C, T, h, w] in ``steps`` student steps; clip i draws its solver
        noise from stream (``seed``, ``first`` + i), the driver's own (``sampling.solver_noise``), so a clip
        is the same in any batch."""
        stream = solver_noise(seed, first + noise.shape[0])
        stream.gens = stream.gens[first:]
        sig = self.grid(steps)
        return sample(self.den, noise * sig[0], sig, self.den.spec.solver, cond=cond, noise=stream)


def at_init(method: str) -> VideoStudent:
    """The student of ``RECIPES[method]`` before any training: its teacher's network on the student's grid
    with the student's solver (the baseline a trained student is measured against)."""
    import dataclasses
    from ..distill.loop import METHODS
    cfg, vm = make_config(RECIPES[method])
    spec = METHODS[method](cfg.args, teacher_of(vm), cfg).spec()
    meta = {**vm.meta, "student": dataclasses.asdict(spec), "card": {**vm.card(), "steps": 0, "method": method}}
    return VideoStudent(S.Student(vm.den, spec), vm.codec, meta)


def load(path) -> VideoStudent:
    """A student export (``run/model`` or a zoo stem) as a ``VideoStudent``; ``init:<method>``: ``at_init(method)``."""
    from pathlib import Path
    from .. import assets
    name = str(path)
    if name.startswith("init:"):
        return at_init(name[5:])
    tensors, meta = (ckpt.load(assets.path(name), require_sha256=True) if name in assets.names()
                     else ckpt.load(Path(name)))
    return build(tensors, meta, name)


def build(tensors: dict, meta: dict, where: str) -> VideoStudent:
    """A distilled student of a video model (an export of kind ``student`` with ``video`` metadata) with its frame codec."""
    from .latents import FrameCodec
    if "video" not in meta:
        raise ckpt.CheckpointError(f"{where}: a video student needs its 'video' metadata (autoencoder, scale)")
    st = S.from_meta(tensors, meta, where)
    return VideoStudent(st, FrameCodec.zoo(meta["video"]["autoencoder"]), meta)


@dataclass
class Recipe:
    """The distillation run: method, its args, and the trainer fields (teacher: a zoo video model)."""
    method: str = "consistency"
    teacher: str = "video-adapter"
    args: dict = field(default_factory=dict)
    steps: int = 3000
    batch_size: int = 8
    lr: float = 1e-4
    warmup: int = 50
    ema_decay: float = 0.99
    seed: int = 0
    ckpt_every: int = 100


# VideoLCM: skipping-step Heun teacher on a fixed Karras grid of 24 levels (pairs i, i+3), EMA target
# (LCM's μ = 0.95), levels drawn lognormally over the flow process's wide σ range (its 4-step grid
# visits σ = 999, 3.0, 1.0, 0.33); no guidance (the teacher's reference is at scale 1).
CD_ARGS = {"order": 2, "skip": 3, "n_start": 24, "n_end": 24, "ema_target": 0.95, "p_mean": 1.0, "p_std": 2.5,
           "sample_steps": 4, "sigma_data": 1.0}
RECIPES = {
    "consistency": Recipe("consistency", args=CD_ARGS),
    # the same with DDIM teacher steps and the progressive student's small learning rate: a Heun step across the
    # widest level pairs overshoots the teacher's ODE (docs/video.md, step-error.json), and the Heun run got worse
    # after step 600 at lr 1e-4
    "consistency-ddim": Recipe("consistency", args={**CD_ARGS, "order": 1}, steps=1800, lr=2e-5),
    # one progressive stage, 8 teacher DDIM steps -> 4 student DDIM steps on the uniform-t grid (the targets come
    # from the teacher itself, not from a distilled 8-step model). DDIM, not Heun: on this grid the first step
    # spans σ 999 -> 7, where Heun's trapezoid in σ overshoots (docs/video.md); a small learning rate (the
    # student starts close: the teacher on this grid)
    "progressive": Recipe("progressive", args={"start_steps": 8, "end_steps": 4, "stage_steps": 1800, "order": 1},
                          steps=1800, lr=2e-5),
}


def make_config(recipe: Recipe, key: str | None = None) -> tuple[DistillConfig, VideoModel]:
    """The distillation config of ``recipe`` (``key``: its name in RECIPES, default its method's) and the teacher."""
    from .. import zoo
    vm = zoo.load(recipe.teacher)
    cfg = distill_config(recipe.method, teacher_of(vm), args=recipe.args, steps=recipe.steps,
                         batch_size=recipe.batch_size, lr=recipe.lr, warmup=recipe.warmup,
                         ema_decay=recipe.ema_decay, seed=recipe.seed, ckpt_every=recipe.ckpt_every, p_uncond=0.0,
                         data="moving-digits-latent", name=f"video-student-{key or recipe.method}")
    cfg.teacher = recipe.teacher
    return cfg, vm


def command(cfg: DistillConfig, trained: str, step: int) -> str:
    stop = f" --stop-after {step}" if step < cfg.steps else ""
    recipe = cfg.name.removeprefix("video-student-")
    return (f"python -m effdiff.video.student --method {recipe} --train {trained} --steps {cfg.steps}{stop} "
            f"--out DIR")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--method", default="consistency", choices=sorted(RECIPES))
    ap.add_argument("--train", default="all", choices=TRAINED)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--stop-after", type=int, default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    recipe = RECIPES[a.method]
    if a.steps is not None:
        recipe = replace(recipe, steps=a.steps)
    cfg, vm = make_config(recipe, a.method)
    tr = VideoDistillTrainer(cfg, a.out, vm, train=a.train)
    with tr.locked():
        tr.run(resume=a.resume, stop_after=a.stop_after)
        print("exported", tr.export())
    print(json.dumps({"step": tr.step, "teacher_nfe": tr.method.teacher.calls}))


if __name__ == "__main__":
    main()
