"""Data-parallel training on torch.distributed: every rank draws the same global batch (same
generator, same state), keeps its slice, and the gradients are averaged across ranks before
clipping, so N ranks take the same steps as one process on the global batch (to float rounding).

    torchrun --nproc-per-node 2 -m effdiff.cli train --preset digits-dit --out runs/x
    launch(fn, 2)       # in tests: effdiff.distributed.launch spawns local ranks

Rank 0 alone writes checkpoints and exports (atomic writes; the others wait on a barrier) and every
rank resumes from the same checkpoint. The trainer runs on the CPU, so the process group is gloo.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..distributed.launch import is_writer, rank, world_size
from .trainer import Trainer, TrainConfig, _shift_augment, evaluate_classifier, trainer_class


def shard(n: int, r: int, world: int) -> slice:
    """Rank ``r``'s rows of a global batch of ``n`` (equal slices: ``n`` must divide by ``world``)."""
    if n % world:
        raise ValueError(f"batch_size {n} does not split over {world} ranks; use a multiple of {world}")
    k = n // world
    return slice(r * k, (r + 1) * k)


def take(drawn: dict, part: slice, n: int) -> dict:
    """``drawn`` with every tensor whose first dimension is the global batch ``n`` cut to ``part``
    (other values, e.g. per-class statistics, are shared by all ranks and kept whole)."""
    return {k: v[part] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == n else v for k, v in drawn.items()}


class DataParallel:
    """Mixin over a ``Trainer`` (sub)class: ``ddp_class(Trainer)`` or ``class X(DataParallel, Trainer)``.

    The loss of a step is the mean over the rank's (equal) slice; gradients are summed across ranks
    as each one is accumulated and divided by the world size, i.e. the gradient of the global-batch
    mean. ``train_step`` returns the global mean loss on every rank.
    """

    def __init__(self, config: TrainConfig, run_dir, progress: bool = True):
        if not dist.is_initialized():
            raise RuntimeError("data-parallel training needs a process group: run under torchrun, or "
                               "effdiff.distributed.launch")
        self.world, self.rank = world_size(), rank()
        shard(config.batch_size, 0, self.world)          # the batch must split evenly: fail before building
        super().__init__(config, run_dir, progress=progress and is_writer())
        self._hooks = []
        for group in self.opt.param_groups:
            for p in group["params"]:
                if p.requires_grad:
                    self._hooks.append(p.register_post_accumulate_grad_hook(self._reduce))
        self._sync_weights()

    def _reduce(self, p: torch.Tensor) -> None:
        dist.all_reduce(p.grad)                     # every rank runs the same graph: same order of calls
        p.grad.div_(self.world)

    def _sync_weights(self) -> None:
        """Rank 0's weights on every rank (they already agree: same seed or same checkpoint)."""
        with torch.no_grad():
            for t in [*self.net.state_dict().values(), *self.ema.state_dict().values()]:
                dist.broadcast(t, src=0)

    # ---- the rank's slice of the global batch -------------------------------------------
    def draw(self, x, y) -> dict:
        n = x.shape[0]
        return take(super().draw(x, y), shard(n, self.rank, self.world), n)

    def loss_on(self, x, y) -> torch.Tensor:
        if self.cfg.task == "classifier":
            x = _shift_augment(x, self.gen)         # on the global batch: the generator advances alike
            part = shard(x.shape[0], self.rank, self.world)
            return F.cross_entropy(self.net(x[part]), y[part])
        return super().loss_on(x, y)

    def train_step(self) -> float:
        local = torch.tensor(super().train_step(), dtype=torch.float64)
        dist.all_reduce(local)
        return float(local) / self.world

    # ---- one writer ------------------------------------------------------------------------
    def save(self):
        if is_writer():
            super().save()
        dist.barrier()

    def export(self, metrics: dict | None = None) -> Path:
        path = self.dir / "model"
        if is_writer():
            path = super().export(metrics)
        dist.barrier()
        return path

    def prepare(self, resume: bool = False, overwrite: bool = False) -> None:
        """Rank 0 checks, cleans and (on resume) loads the run directory; the others follow it
        (and raise the same error when it refuses), then load the same checkpoint."""
        error = [None]
        if is_writer():
            try:
                super().prepare(resume, overwrite)
            except Exception as e:                   # re-raised below, after the others heard of it
                error[0] = (type(e).__name__, str(e))
                failure = e
        dist.broadcast_object_list(error, src=0)
        if error[0] is not None:
            if is_writer():
                raise failure
            raise RuntimeError(f"rank 0 refused the run directory ({error[0][0]}: {error[0][1]})")
        if not is_writer() and resume:
            self.restore()
        dist.barrier()


_CLASSES: dict[type, type] = {}


def ddp_class(cls: type[Trainer]) -> type[Trainer]:
    """``cls`` made data-parallel (cached, so the same class comes back every call)."""
    if issubclass(cls, DataParallel):
        return cls
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"DataParallel{cls.__name__}", (DataParallel, cls), {"__module__": __name__})
    return _CLASSES[cls]


DDPTrainer = ddp_class(Trainer)


def train(config: TrainConfig, run_dir, resume: bool = False, progress: bool = True, overwrite: bool = False) -> Path:
    """``training.train`` on every rank of the current process group; rank 0 writes ``model.*``."""
    tr = ddp_class(trainer_class(config))(config, run_dir, progress=progress)
    tr.run(resume=resume, overwrite=overwrite)
    metrics = {}
    if config.task == "classifier" and is_writer():
        metrics["test_accuracy"] = evaluate_classifier(tr.ema)
    return tr.export(metrics)
