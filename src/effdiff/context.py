"""The loop context: the ground floor that hooks, denoisers, techniques and the driver share.

``ed.sample`` opens one ``LoopContext`` per generation; hooks read it (``current_context()``)
instead of guessing the step from timestep values: ``step`` (true index of the solver step in
progress, also when a segment of a schedule runs), ``num_steps``, ``stage`` (which evaluation
inside a multi-evaluation step: Heun's corrector is stage 1), ``branch`` ("cond", or "cfg"
while guidance evaluates both branches in one batch), ``sigma`` and ``generation`` (a fresh
number per ``sample()`` call; per-generation caches key their state on it).

This module imports nothing from effdiff.
"""
from __future__ import annotations

import contextvars
import itertools
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

Tensor = torch.Tensor

_CTX: contextvars.ContextVar["LoopContext | None"] = contextvars.ContextVar("effdiff_loop", default=None)
_generations = itertools.count(1)   # next() on itertools.count is atomic under the GIL


@dataclass
class LoopContext:
    """State of the sampling loop in progress; read it with ``current_context()``."""
    num_steps: int | None
    step: int = 0
    stage: int = 0
    branch: str = "cond"
    sigma: Tensor | None = None
    nfe: int = 0
    skip_uncond: bool = False
    generation: int = 0
    state: dict = field(default_factory=dict)  # per-generation scratch space for hooks

    @contextmanager
    def branch_scope(self, branch: str):
        old, self.branch = self.branch, branch
        try:
            yield self
        finally:
            self.branch = old


def current_context() -> LoopContext | None:
    """The loop context of the ``sample()`` call in progress, or None outside one."""
    return _CTX.get()


def new_generation() -> int:
    """A process-wide fresh generation number (thread-safe)."""
    return next(_generations)


@contextmanager
def loop_context(num_steps: int | None, step: int = 0):
    """Open a fresh loop context (a new generation: caches keyed to it start empty)."""
    ctx = LoopContext(num_steps=num_steps, step=step, generation=new_generation())
    token = _CTX.set(ctx)
    try:
        yield ctx
    finally:
        _CTX.reset(token)
