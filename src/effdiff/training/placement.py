"""Where a training run computes: ``with on_device("cuda:1"): train(...)`` moves the trainer's networks
(its own, and those of the objects it holds, e.g. a distillation method's teacher) to the device when the
run starts, and every batch after it is drawn. Randomness is drawn on the CPU generator first, so a run
draws the same batches, noise levels and noise on every device; checkpoints are written from CPU
copies (``checkpoint.save``)."""
from __future__ import annotations

import contextvars
from contextlib import contextmanager

import torch

_DEVICE: contextvars.ContextVar[torch.device | None] = contextvars.ContextVar("effdiff_train_device", default=None)


@contextmanager
def on_device(device):
    """Training runs started inside the block compute on ``device`` (None: the CPU)."""
    token = _DEVICE.set(None if device is None else torch.device(device))
    try:
        yield
    finally:
        _DEVICE.reset(token)


def current() -> torch.device:
    return _DEVICE.get() or torch.device("cpu")


def modules_of(trainer) -> list[torch.nn.Module]:
    """The networks a trainer holds: its module attributes and those of the objects it holds (one level)."""
    found: dict[int, torch.nn.Module] = {}
    for v in vars(trainer).values():
        if isinstance(v, torch.nn.Module):
            found[id(v)] = v
        elif hasattr(v, "__dict__") and not isinstance(v, (type, torch.Tensor)):
            for m in vars(v).values():
                held = m.values() if isinstance(m, dict) else [m]    # e.g. a method's ``extras``
                found.update({id(x): x for x in held if isinstance(x, torch.nn.Module)})
    return list(found.values())


def place(trainer, device: torch.device) -> None:
    """Move the trainer's networks to ``device`` in place (the optimizer keeps its parameters)."""
    trainer.device = device
    for m in modules_of(trainer):
        m.to(device)


def batch_on(trainer, x, y):
    """A drawn batch moved to the trainer's device."""
    d = getattr(trainer, "device", None)
    if d is None or d.type == "cpu":
        return x, y
    return x.to(d), (y.to(d) if isinstance(y, torch.Tensor) else y)

