"""Parallel inference methods by name: ``parallel(denoiser, method, scale=w, **options)`` returns
the guided denoiser that every rank runs with the same arguments (``ed.sample`` as usual)."""
from __future__ import annotations

from typing import Callable

from ..denoisers import guided
from .batch import BatchParallel
from .comm import Comm
from .patch import PatchConfig, patch_parallel
from .pipeline import PipeConfig, pipefusion

# network type -> (denoiser, PatchConfig, comm) -> denoiser: how patch / sequence / ring split a network that
# is not an image UNet/DiT (effdiff.video.parallel registers the video DiT: its frames across ranks)
SPLITS: dict[type, Callable] = {}


def _split(den, config: PatchConfig, comm: Comm):
    """Row slabs of an image network (patch.py), or the split registered for the network's type."""
    split = next((f for cls, f in SPLITS.items() if isinstance(getattr(den, "net", None), cls)), patch_parallel)
    return split(den, config, comm)


# name -> (denoiser, comm, options) -> denoiser without guidance (guidance goes on top)
METHODS: dict[str, Callable] = {
    "none": lambda den, comm, **o: den,
    # batch split over ranks: CFG branches on different ranks, parallel-in-time windows, data parallel
    "cfg": lambda den, comm, **o: BatchParallel(den, comm),
    "patch": lambda den, comm, **o: _split(den, PatchConfig(**o), comm),
    "sequence": lambda den, comm, **o: _split(den, PatchConfig(attention="ulysses", **o), comm),
    "ring": lambda den, comm, **o: _split(den, PatchConfig(attention="ring", **o), comm),
    "pipefusion": lambda den, comm, **o: pipefusion(den, PipeConfig(**o), comm),
}


def parallel(denoiser, method: str, scale: float = 1.0, comm: Comm | None = None, **options):
    """``denoiser`` parallelised by ``method`` (one of ``METHODS``), then guided with ``scale``."""
    if method not in METHODS:
        raise KeyError(f"unknown parallel method {method!r}; known: {', '.join(METHODS)}")
    if method in ("none", "cfg") and options:
        raise TypeError(f"method {method!r} takes no options, got {sorted(options)}")
    return guided(METHODS[method](denoiser, comm or Comm(), **options), scale)
