"""The training loop: AdamW, EMA, a progress bar, atomic safetensors checkpoints and exact resume.

Everything random (batches, noise levels, noise, label dropout, augmentation) draws from one
``torch.Generator`` whose state is checkpointed with the weights, the EMA and the optimizer,
so an interrupted run resumed with ``resume=True`` ends bit-identical to an uninterrupted one.

Training tricks are options of ``TrainConfig`` (all off by default; docs/training.md): ``loss``
(min-SNR-γ weighting, sliced score matching), ``coupling`` (minibatch OT, immiscible noise
assignment; ``coupling.py``), ``prior`` (PriorGrad; ``priorgrad.py``), ``repa`` (representation
alignment; ``repa.py``) and ``ema`` (constant or power-function EMA; ``ema.py``).
"""
from __future__ import annotations

import dataclasses
import errno
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import checkpoint as ckpt
from ..io import LOCK_NAME, RunLock, clean_stale
from ..models import build
from ..process import from_config
from ..denoisers import Denoiser
from ..objectives import DiffusionLoss, LossConfig
from . import ema as ema_mod
from . import placement, priorgrad, repa as repa_mod
from .coupling import COUPLINGS, couple


@dataclass
class TrainConfig:
    name: str = "run"
    task: str = "diffusion"             # diffusion | classifier
    arch: str = "unet"                  # a models.ARCHS key
    model: dict = field(default_factory=dict)
    process: dict | None = None         # process.config() dict, for diffusion
    prediction: str = "eps"             # eps | x0 | v | velocity | score
    loss: dict = field(default_factory=dict)   # LossConfig fields
    data: str = "digits"                # digits | toy:<name>
    steps: int = 8000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    p_uncond: float = 0.1               # label dropout for classifier-free guidance
    seed: int = 0
    ckpt_every: int = 1000
    # training tricks (defaults: off; a config at its defaults trains and stores exactly as before they existed)
    coupling: str = "none"              # none | ot | immiscible  (noise-to-data assignment in each batch)
    prior: str = "standard"             # standard | priorgrad    (class-conditional mean / diagonal std prior)
    repa: dict = field(default_factory=dict)   # {} (off) | {"encoder": "digits-classifier", "weight": 0.5, "layer": 2}
    ema: dict = field(default_factory=dict)    # {} = {"kind": "constant", "decay": ema_decay} | {"kind": "power", "sigma_rel": 0.05}

    TRICK_DEFAULTS = {"coupling": "none", "prior": "standard", "repa": {}, "ema": {}}

    def validate(self) -> "TrainConfig":
        """Raise a ``ValueError`` naming the first field that cannot train."""
        for name in ("steps", "batch_size", "ckpt_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not 0 <= self.ema_decay < 1 or not 0 <= self.p_uncond <= 1 or self.warmup < 0:
            raise ValueError(f"need 0 <= ema_decay < 1, 0 <= p_uncond <= 1 and warmup >= 0, got "
                             f"{self.ema_decay!r}, {self.p_uncond!r}, {self.warmup!r}")
        self._validate_tricks()
        return self

    def _validate_tricks(self) -> None:
        if self.task == "diffusion":
            if not isinstance(self.loss, dict):
                raise ValueError(f"loss must be a dict of LossConfig fields, got {self.loss!r}")
            try:
                lc = LossConfig(**self.loss)
            except TypeError as e:
                raise ValueError(f"loss: {e} (LossConfig fields: "
                                 f"{', '.join(f.name for f in dataclasses.fields(LossConfig))})") from None
            DiffusionLoss(lc)
        if self.task == "diffusion" and lc.kind == "ssm" and self.prediction != "score":
            raise ValueError(f"loss kind 'ssm' (sliced score matching) trains score-prediction models; "
                             f"set prediction='score' (got {self.prediction!r})")
        if self.coupling not in COUPLINGS:
            raise ValueError(f"unknown coupling {self.coupling!r}; known: {', '.join(COUPLINGS)}")
        if self.prior not in priorgrad.PRIORS:
            raise ValueError(f"unknown prior {self.prior!r}; known: {', '.join(priorgrad.PRIORS)}")
        repa_mod.validate(self.repa)
        ema_mod.validate(self.ema, self.ema_decay)
        tricks = [k for k, v in self.TRICK_DEFAULTS.items() if getattr(self, k) != v and k != "ema"]
        if tricks and self.task != "diffusion":
            raise ValueError(f"{', '.join(tricks)} apply to diffusion training, not task {self.task!r}")

    def to_json(self) -> dict:
        """The config as stored in checkpoints and exports; the training-trick fields are left out
        at their defaults, so runs started before they existed still resume."""
        import json
        d = json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists, as stored
        for k, v in self.TRICK_DEFAULTS.items():
            if d.get(k) == v:
                del d[k]
        return d


def _shift_augment(x: torch.Tensor, gen: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (background -1)."""
    b, _, h, w = x.shape
    p = max_shift
    xp = F.pad(x, (p, p, p, p), value=-1.0)
    dx = torch.randint(0, 2 * p + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * p + 1, (b,), generator=gen)
    return torch.stack([xp[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


# tasks trained by a Trainer subclass elsewhere: task -> (module, class), imported when used
TASK_TRAINERS: dict[str, tuple[str, str]] = {"autoencoder": ("effdiff.latent.train", "AutoencoderTrainer"),
                                              "video": ("effdiff.video.train", "VideoTrainer")}
TASK_NAMES = ("diffusion", "classifier", *TASK_TRAINERS)


def trainer_class(config: TrainConfig) -> type["Trainer"]:
    """The Trainer (sub)class that trains ``config.task``."""
    if config.task in TASK_TRAINERS:
        import importlib
        module, cls = TASK_TRAINERS[config.task]
        return getattr(importlib.import_module(module), cls)
    return Trainer


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict, list]:
    """An optimizer's state as flat tensors ``{prefix}{param index}.{key}`` (safetensors, no pickle)
    and its param groups (JSON metadata); ``load_optimizer`` is the inverse."""
    osd = opt.state_dict()
    t = {f"{prefix}{i}.{k}": v if torch.is_tensor(v) else torch.tensor(v)
         for i, st in osd["state"].items() for k, v in st.items()}
    return t, osd["param_groups"]


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict, prefix: str, param_groups: list) -> None:
    """Restore ``opt`` from the ``{prefix}*`` tensors and param groups of ``optimizer_tensors``."""
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith(prefix):
            i, name = k[len(prefix):].split(".", 1)
            state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": param_groups})


class Trainer:
    """Train ``config`` in ``run_dir``: ``Trainer(cfg, run_dir).run(resume=True)``.

    One diffusion step is ``draw`` (all of the global batch's randomness: label dropout, σ, ε)
    then ``loss_from`` (per-sample losses); a data-parallel trainer slices between the two.
    """
    TASKS = ("diffusion", "classifier")

    def __init__(self, config: TrainConfig, run_dir, progress: bool = True):
        self.cfg, self.dir, self.progress = config.validate(), Path(run_dir), progress
        torch.manual_seed(config.seed)
        self.net = build(config.arch, dict(config.model))
        self.ema = build(config.arch, dict(config.model))
        self.ema.load_state_dict(self.net.state_dict())
        self.ema.requires_grad_(False)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.step, self.elapsed = 0, 0.0
        self.num_classes = int(config.model.get("num_classes", getattr(self.net.config, "num_classes", 0)))
        self.whitening = self.repa = None
        if config.task == "diffusion":
            self.process = from_config(config.process)
            self.denoiser = Denoiser(self.net, self.process, config.prediction, self.num_classes)
            self.loss = DiffusionLoss(LossConfig(**config.loss))
        elif config.task not in self.TASKS:
            raise ValueError(f"unknown task {config.task!r}; known: {', '.join(TASK_NAMES)}")
        self._load_data()
        if config.task == "diffusion":
            self._setup_tricks()
        self.opt = torch.optim.AdamW(self.trained_parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def trained_parameters(self) -> list:
        """The network's parameters, then REPA's head's (optimizer order; what the gradient clip sees)."""
        repa = getattr(self, "repa", None)
        return list(self.net.parameters()) + (list(repa.head.parameters()) if repa is not None else [])

    def _setup_tricks(self):
        """PriorGrad's statistics (from the training data) and REPA's head (deterministic given the seed)."""
        c = self.cfg
        if c.prior == "priorgrad":
            if self.toy is not None:
                x, y = self.toy.sample(20000, generator=torch.Generator().manual_seed(0)).float(), None
            else:
                x, y = self.x, self.y
            mean, std = priorgrad.class_statistics(x, y if self.num_classes else None, self.num_classes)
            self.whitening = priorgrad.Whitening(mean, std)
        if c.repa:
            if self.toy is not None:
                raise ValueError("repa needs image data and a UNet/DiT network, not a toy dataset")
            x = self.x[:2]
            labels = self.denoiser.labels(None, 2, x.device)
            t = self.process.c_noise(self.process.sigma_to_t(torch.ones(2, dtype=torch.float64))).to(x.dtype)
            self.repa = repa_mod.REPA(c.repa, self.net, (x, t, labels))

    # ---- data ----------------------------------------------------------------------
    def _load_data(self):
        from .. import data
        if self.cfg.data.startswith("toy:"):
            self.toy, self.x, self.y = data.toy(self.cfg.data[4:]), None, None
        elif self.cfg.data in data.dataset_names():
            self.x, self.y = data.dataset(self.cfg.data, "train")
            self.toy = None
        else:
            raise ValueError(f"unknown data {self.cfg.data!r}; known: {', '.join(data.dataset_names())}, toy:<name>")

    def batch(self):
        b = self.cfg.batch_size
        if self.toy is not None:
            return self.toy.sample(b, generator=self.gen).float(), None
        idx = torch.randint(0, len(self.x), (b,), generator=self.gen)
        return self.x[idx], self.y[idx]

    # ---- one step ------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        c = self.cfg
        if step < c.warmup:
            return c.lr * (step + 1) / c.warmup
        frac = (step - c.warmup) / max(1, c.steps - c.warmup)
        return c.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))

    def draw(self, x, y) -> dict:
        """The global batch with its randomness drawn: ``{"x", "y", "sigma", "eps"}`` (diffusion),
        plus ``"proj"`` [B, M, ...] for sliced score matching. Every tensor is batch-first, so a
        rank's slice ``{k: v[lo:hi]}`` is its share. Order of draws: label dropout, σ, ε (then the
        coupling permutes ε among the batch, with no draw), then SSM's projections."""
        if y is not None and self.num_classes > 0 and self.cfg.p_uncond > 0:
            drop = (torch.rand(y.shape, generator=self.gen) < self.cfg.p_uncond).to(y.device)
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        y = y if self.num_classes > 0 else None
        sigma, eps = self.loss.draw(self.denoiser, x, self.gen)
        coupling = getattr(self.cfg, "coupling", "none")
        if coupling != "none":                # images (and their labels) stay; the noise is reassigned
            eps = couple(self._whiten(x, y), eps, coupling)
        b = {"x": x, "y": y, "sigma": sigma, "eps": eps}
        proj = self.loss.draw_projections(x, self.gen)
        if proj is not None:
            b["proj"] = proj
        return b

    def _whiten(self, x, y):
        """The data the network learns: x itself, or PriorGrad's (x - μ_y) / s_y."""
        w = getattr(self, "whitening", None)
        return x if w is None else w.whiten(x, y)

    def loss_from(self, b: dict) -> torch.Tensor:
        """Per-sample losses [B] of a drawn batch (or of one rank's slice of it)."""
        loss = self.loss(self.denoiser, self._whiten(b["x"], b["y"]), b["y"], sigma=b["sigma"], eps=b["eps"],
                         proj=b.get("proj"))
        repa = getattr(self, "repa", None)
        if repa is not None:
            loss = loss + repa.weight * repa.loss(b["x"])
        return loss

    def loss_on(self, x, y) -> torch.Tensor:
        if self.cfg.task == "classifier":
            x = _shift_augment(x, self.gen)
            return F.cross_entropy(self.net(x), y)
        return self.loss_from(self.draw(x, y)).mean()

    def train_step(self) -> float:
        self.net.train()
        x, y = placement.batch_on(self, *self.batch())
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        loss = self.loss_on(x, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {float(loss)} at step {self.step}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.trained_parameters(), self.cfg.grad_clip)
        self.opt.step()
        decay = self.ema_decay_at(self.step)
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.net.parameters()):
                e.lerp_(p, 1 - decay)
            for e, b in zip(self.ema.buffers(), self.net.buffers()):
                e.copy_(b)
        self.step += 1
        return loss.item()

    def ema_denoiser(self):
        """The EMA network as the denoiser the export loads to (PriorGrad-wrapped when trained with
        ``prior="priorgrad"``); start sampling from ``priorgrad.start(den, randn * σ_max, cond)``."""
        den = Denoiser(self.ema, self.process, self.cfg.prediction, self.num_classes)
        w = getattr(self, "whitening", None)
        return den if w is None else priorgrad.PriorGradDenoiser(den, w.mean, w.std)

    def ema_decay_at(self, step: int) -> float:
        """The EMA decay after optimizer step ``step`` (``TrainConfig.ema``; see ``ema.py``)."""
        return ema_mod.decay_fn(getattr(self.cfg, "ema", {}), self.cfg.ema_decay)(step)

    # ---- checkpoints ---------------------------------------------------------------
    def state(self) -> tuple[dict, dict]:
        t = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        t.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        if getattr(self, "repa", None) is not None:
            t.update({f"repa.{k}": v for k, v in self.repa.head.state_dict().items()})
        opt_t, param_groups = optimizer_tensors(self.opt, "opt.")
        t.update(opt_t)
        t["rng.gen"] = self.gen.get_state()
        t["rng.torch"] = torch.get_rng_state()
        meta = {"config": self.cfg.to_json(), "step": self.step, "elapsed_s": self.elapsed,
                "param_groups": param_groups, "format": "effdiff-train-1"}
        return t, meta

    def save(self):
        t, meta = self.state()
        ckpt.save(self.dir / "checkpoint", t, meta)

    def restore(self) -> bool:
        """Load the run directory's checkpoint (False when it holds none); a corrupt, edited or
        foreign checkpoint raises ``CheckpointError`` and is never trained on."""
        stem = self.dir / "checkpoint"
        if not any(p.exists() for p in ckpt.files(stem)):
            return False
        t, meta = ckpt.load(stem)    # verifies the SHA-256; recovers the JSON from the header if lost
        if meta.get("format") != "effdiff-train-1":
            raise ckpt.CheckpointError(f"{stem}: not an effdiff training checkpoint (format {meta.get('format')!r})")
        if meta.get("config") != self.cfg.to_json():
            raise ckpt.CheckpointError(f"{self.dir}/checkpoint was written by a different config; "
                                       "use a new run directory or the same preset and options")
        ckpt.load_state(self.net, t, "net.", where=str(self.dir / "checkpoint"))
        ckpt.load_state(self.ema, t, "ema.", where=str(self.dir / "checkpoint"))
        if getattr(self, "repa", None) is not None:
            ckpt.load_state(self.repa.head, t, "repa.", where=str(self.dir / "checkpoint"))
        load_optimizer(self.opt, t, "opt.", meta["param_groups"])
        self.gen.set_state(t["rng.gen"])
        torch.set_rng_state(t["rng.torch"])
        self.step, self.elapsed = int(meta["step"]), float(meta["elapsed_s"])
        return True

    def export(self, metrics: dict | None = None) -> Path:
        """Write the EMA weights as ``model.safetensors`` + ``model.json`` (what the zoo ships)."""
        c = self.cfg
        meta = {"format": "effdiff-model-1", "kind": export_kind(self), "arch": c.arch, "model": dataclasses.asdict(self.ema.config),
                "task": c.task, "data": c.data, "process": c.process, "prediction": c.prediction if c.task == "diffusion" else None,
                "num_classes": self.num_classes,
                "card": {"preset": c.name, "seed": c.seed, "steps": self.step, "batch_size": c.batch_size,
                         "wall_time_s": round(self.elapsed, 1), "machine": machine(),
                         "command": f"effdiff train --preset {c.name} --out DIR", "metrics": metrics or {}}}
        tensors = self.ema.state_dict()
        tricks = {k: v for k, v in c.to_json().items() if k in c.TRICK_DEFAULTS}
        if c.loss.get("kind", "dsm") != "dsm" or c.loss.get("weighting", "none") != "none":
            tricks["loss"] = c.loss
        if tricks:
            meta["card"]["training"] = tricks      # how it was trained (the REPA head is not exported)
        if getattr(self, "whitening", None) is not None:   # a PriorGrad model: zoo / priorgrad.from_meta wrap it
            meta["prior"] = {"kind": "priorgrad", "min_std": priorgrad.DEFAULT_MIN_STD}
            tensors = {**tensors, **priorgrad.export_tensors(self.whitening)}
        ckpt.save(self.dir / "model", tensors, meta)
        return self.dir / "model"

    RUN_FILES = ("checkpoint.json", "checkpoint.safetensors", "model.json", "model.safetensors")

    def prepare(self, resume: bool = False, overwrite: bool = False) -> None:
        """Never lose a run: resume one that exists (refuse when there is none), or start in an
        empty directory (a non-empty one only with ``overwrite``, which deletes the old run files)."""
        if resume and overwrite:
            raise ValueError("resume and overwrite exclude each other")
        if resume and not self.dir.is_dir():
            raise ckpt.CheckpointError(f"nothing to resume in {self.dir}: no such directory "
                                       "(check the path, or start a new run without --resume)")
        self.lock.acquire()                      # a second run into this folder fails here, at once
        clean_stale(self.dir)
        if resume:
            if not self.restore():
                raise ckpt.CheckpointError(f"nothing to resume in {self.dir}: it holds no checkpoint "
                                           "(check the path, or start a new run without --resume)")
            if self.progress:
                print(f"resumed {self.dir} at step {self.step}")
            return
        held = sorted(p.name for p in self.dir.iterdir() if p.name != LOCK_NAME) if self.dir.is_dir() else []
        if held and not overwrite:
            raise FileExistsError(errno.EEXIST, f"run directory is not empty ({', '.join(held[:4])}); pass "
                                  "--resume to continue its run or --overwrite to start over", str(self.dir))
        for name in self.RUN_FILES:
            (self.dir / name).unlink(missing_ok=True)

    # ---- the loop ------------------------------------------------------------------
    def run(self, resume: bool = False, stop_after: int | None = None, overwrite: bool = False):
        """Train to ``config.steps``; ``stop_after`` ends early (after a checkpoint), as a kill would. The
        run folder is locked for the run (``io.RunLock``); a lock taken by ``locked()`` is kept."""
        mine = not self.lock.held
        try:
            return self._run(resume, stop_after, overwrite)
        finally:
            if mine:
                self.lock.release()

    @property
    def lock(self) -> RunLock:
        """The run folder's lock, held from ``prepare()`` to the end of ``run()`` (or of ``locked()``)."""
        if "_lock" not in self.__dict__:
            self.__dict__["_lock"] = RunLock(self.dir)
        return self.__dict__["_lock"]

    def locked(self) -> RunLock:
        """``with trainer.locked(): trainer.run(); trainer.export()``: one hold of the run folder."""
        return self.lock

    def _run(self, resume: bool, stop_after: int | None, overwrite: bool):
        placement.place(self, placement.current())     # before restore: the optimizer state follows its params
        self.prepare(resume, overwrite)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=self.cfg.steps, initial=self.step, desc=self.cfg.name, mininterval=2.0)
        ema_loss = None
        t0 = time.perf_counter()
        while self.step < self.cfg.steps:
            loss = self.train_step()
            ema_loss = loss if ema_loss is None else 0.98 * ema_loss + 0.02 * loss
            if bar is not None:
                bar.update(1)
                if self.step % 50 == 0:
                    bar.set_postfix(loss=f"{ema_loss:.4f}")
            if self.step % self.cfg.ckpt_every == 0 or self.step == self.cfg.steps:
                self.elapsed += time.perf_counter() - t0
                t0 = time.perf_counter()
                self.save()
                if stop_after is not None and self.step >= stop_after:
                    break
        if bar is not None:
            bar.close()
        return self


def evaluate_classifier(net, split: str = "test") -> float:
    from ..data import digits
    x, y = digits(split)
    net.eval()
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


def train(config: TrainConfig, run_dir, resume: bool = False, progress: bool = True, overwrite: bool = False) -> Path:
    """Train (or resume) and export the EMA model; returns the path stem of ``model.*``."""
    tr = trainer_class(config)(config, run_dir, progress=progress)
    with tr.locked():
        tr.run(resume=resume, overwrite=overwrite)
        metrics = {}
        if config.task == "classifier":
            metrics["test_accuracy"] = evaluate_classifier(tr.ema.cpu())
        return tr.export(metrics)


def export_kind(tr) -> str:
    """The model kind an export names (``effdiff.kinds``): PriorGrad, a latent model, or plain."""
    from ..kinds import is_latent_data
    if getattr(tr, "whitening", None) is not None:
        return "prior"
    return "latent" if tr.cfg.task == "diffusion" and is_latent_data(tr.cfg.data) else "plain"


def machine() -> dict:
    """The machine description the bench records (one definition, in ``io.machine``)."""
    from ..io import machine
    return machine()
