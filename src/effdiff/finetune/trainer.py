"""Fine-tuning loop: the project's ``Trainer`` (AdamW, warm-up + cosine, gradient clipping, EMA,
atomic checkpoints, bit-identical resume) on a zoo model, training only what the method marks
trainable, on a target domain or a condition map computed from the images.

    cfg = FinetuneConfig(base="digits-unet", method="lora", method_args={"rank": 4}, domain="thick")
    FinetuneTrainer(cfg, "runs/lora-thick").run()        # kill it; .run(resume=True) continues exactly

A latent base (``mnist-ldm-dit``) trains on the target images encoded by its autoencoder; a control
module there reads the image's condition map area-resized to the latent grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import zoo
from ..denoisers import Denoiser
from ..latent import latent_of
from ..objectives import DiffusionLoss, LossConfig
from ..training.trainer import TrainConfig, Trainer, machine
from .conditions import CONDITIONS, condition
from .control import Hinted
from .domains import DOMAINS, domain
from .methods import method

DATASET_BY_SIZE = {8: "digits", 28: "mnist"}


@dataclass
class FinetuneConfig(TrainConfig):
    """A ``TrainConfig`` (optimiser, schedule, EMA, seed, checkpoints) plus what to fine-tune."""
    name: str = "finetune"
    base: str = "digits-unet"           # the zoo model adapted
    method: str = "lora"                # a methods.METHODS key
    method_args: dict = field(default_factory=dict)
    domain: str = "identity"            # domains.DOMAINS key: the target data
    condition: str | None = None        # conditions.CONDITIONS key, for control methods
    n_per_class: int | None = None      # few-shot: target images per class (None: the whole split)
    steps: int = 600
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 50
    ema_decay: float = 0.0              # 0: no EMA (the exported weights are the trained ones)
    ckpt_every: int = 100

    def validate(self) -> "FinetuneConfig":
        super().validate()
        m = method(self.method)         # KeyError naming the known methods
        if self.domain not in DOMAINS:
            raise ValueError(f"unknown target domain {self.domain!r}; known: {', '.join(DOMAINS)}")
        if m.conditioned and self.condition not in CONDITIONS:
            raise ValueError(f"{self.method} trains on a condition map: condition must be one of "
                             f"{', '.join(CONDITIONS)}, got {self.condition!r}")
        if not m.conditioned and self.condition is not None:
            raise ValueError(f"{self.method} takes no condition map (got {self.condition!r})")
        if self.n_per_class is not None and self.n_per_class < 1:
            raise ValueError(f"n_per_class must be a positive integer, got {self.n_per_class!r}")
        return self


class FinetuneTrainer(Trainer):
    """``Trainer`` whose network is a zoo model prepared by a fine-tuning method."""

    def __init__(self, config: FinetuneConfig, run_dir, progress: bool = True):
        self.cfg, self.dir, self.progress = config.validate(), Path(run_dir), progress
        self.method = method(config.method)
        torch.manual_seed(config.seed)
        self.base = zoo.load(config.base)
        self.net = self.method.build(self.base, dict(config.method_args))
        self.ema = self.method.build(zoo.load(config.base), dict(config.method_args))
        self.ema.load_state_dict(self.net.state_dict())
        self.ema.requires_grad_(False)
        self.trainable = [p for p in self.net.parameters() if p.requires_grad]
        if not self.trainable:
            raise ValueError(f"{config.method} left nothing trainable")
        self.opt = torch.optim.AdamW(self.trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.step, self.elapsed = 0, 0.0
        self.num_classes = self.base.cond_classes
        self.process = self.base.process
        self.denoiser = Denoiser(self.net, self.process, self.base.prediction, self.num_classes)
        self.loss = DiffusionLoss(self._loss_config())
        self._load_data()

    def _loss_config(self) -> LossConfig:
        """The base model's training loss (its preset's time density), else uniform."""
        from ..training.presets import PRESETS
        p = PRESETS.get(self.base.meta.get("card", {}).get("preset", ""))
        return LossConfig(**p.loss) if p is not None else LossConfig()

    def _load_data(self):
        self.toy, self.hint_channels = None, 0
        lat = latent_of(self.base)
        if lat is not None:                 # a latent model: the target images, encoded by its autoencoder
            c = self.cfg
            hint = c.condition if self.method.conditioned else None
            x, y = _encoded(lat, c.domain, c.n_per_class, hint)
            self.x, self.y = x.clone(), y.clone()
            self.hint_channels = x.shape[1] - lat.latent_shape[0]
            return
        ds = DATASET_BY_SIZE.get(self.base.meta["model"].get("image_size"))
        if ds is None:
            raise ValueError(f"no embedded dataset fits {self.cfg.base}")
        self.x, self.y = domain(self.cfg.domain, "train", ds, self.cfg.n_per_class)

    def loss_on(self, x, y) -> torch.Tensor:
        if not self.method.conditioned:
            return super().loss_on(x, y)
        if self.hint_channels:
            x, hint = x[:, :-self.hint_channels], x[:, -self.hint_channels:]
        else:
            hint = condition(self.cfg.condition, x)
        den = Denoiser(Hinted(self.net, hint), self.process, self.base.prediction, self.num_classes)
        saved, self.denoiser = self.denoiser, den
        try:
            return super().loss_on(x, y)
        finally:
            self.denoiser = saved

    @property
    def trainable_count(self) -> int:
        return sum(p.numel() for p in self.trainable)

    def export(self, metrics: dict | None = None) -> Path:
        """Write the trained part (EMA weights when ema_decay > 0) as ``model.safetensors`` + ``model.json``."""
        c = self.cfg
        card = {"preset": c.name, "base": c.base, "method": c.method, "method_args": c.method_args,
                "domain": c.domain, "condition": c.condition, "n_per_class": c.n_per_class, "seed": c.seed,
                "steps": self.step, "batch_size": c.batch_size, "lr": c.lr, "wall_time_s": round(self.elapsed, 1),
                "trainable_params": self.trainable_count, "machine": machine(),
                "command": f"effdiff train --preset {c.name} --out DIR", "metrics": metrics or {}}
        self.method.save(self.ema, self.dir / "model", card)
        return self.dir / "model"


_ENCODED: dict = {}


def _encoded(lat, domain_name: str, n_per_class, condition_name: str | None):
    """Target images of a latent model encoded by its autoencoder ``[N, c, h, w]``, with the condition
    map of each image area-resized to the latent grid appended as channels; cached per process (keyed by
    the autoencoder's SHA-256 and scale)."""
    block = lat.meta["latent"]
    key = (block.get("autoencoder_sha256"), lat.scale, block["data"], domain_name, n_per_class, condition_name)
    if key not in _ENCODED:
        x, y = domain(domain_name, "train", block["data"], n_per_class)
        z = lat.encode(x)
        if condition_name is not None:  # the map of the image, on the latent grid, rides along as channels
            z = torch.cat([z, condition(condition_name, x, z.shape[-2:])], dim=1)
        _ENCODED.clear()                # one entry: a few MB
        _ENCODED[key] = (z, y)
    return _ENCODED[key]


def finetune(config: FinetuneConfig, run_dir, resume: bool = False, overwrite: bool = False,
             progress: bool = True) -> Path:
    """Train (or resume) and export; returns the path stem of ``model.*``."""
    tr = FinetuneTrainer(config, run_dir, progress=progress)
    with tr.locked():                            # one hold of the run folder: run and export
        return tr.run(resume=resume, overwrite=overwrite).export()


def load(base, path):
    """A fine-tuned model: the zoo ``base`` (a name or a denoiser) with the file at ``path`` applied —
    a denoiser for full / LoRA files, a ``Controlled`` network for control files."""
    from .. import checkpoint as ckpt
    _, meta = ckpt.load(path)
    den = zoo.load(base) if isinstance(base, str) else base
    # the pinned format picks the loader (the card is free text: editing it must not redirect the file)
    fmt = meta.get("format") if isinstance(meta.get("format"), str) else ""
    name = {"effdiff-lora-1": "lora", "effdiff-control-1": "controlnet"}.get(fmt, "full")
    return method(name).load(den, path)
