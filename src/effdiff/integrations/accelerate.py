"""``effdiff.accelerate(pipe, ...)``: an effdiff solver and any registered techniques on a
diffusers pipeline in one call, undone exactly by ``remove()``::

    h = effdiff.accelerate(pipe, solver="dpmpp-2m", steps=20, cache="deepcache")
    image = pipe(prompt).images[0]
    h.stats["deepcache"].reused
    h.remove()                       # the pipeline is the original again, scheduler included

A technique is named as registered (``effdiff.techniques.names()``), as ``(name, config)``
(a config dataclass or a dict of its fields), or a list of these. The keyword says its family
(``cache`` -> caching, ``quant``, ``prune``, ``early_exit``, ``systems``, ``distill``);
``techniques=`` takes any. Techniques attach to the pipeline's ``unet`` / ``transformer`` seen
as a ``DiffusersDenoiser``; the scheduler runs the model inside effdiff's loop context so
caches see the true step.
"""
from __future__ import annotations

import importlib

from .. import techniques as T
from .diffusers import DiffusersDenoiser
from .scheduler import EffdiffScheduler

FAMILY_OF = {"cache": "caching", "quant": "quant", "prune": "prune", "early_exit": "early-exit",
             "systems": "systems", "distill": "distill", "techniques": None}
_PACKAGES = {"quant": "quant", "prune": "prune", "distill": "distill", "systems": "systems"}


def pipeline_model(pipe):
    """The denoising network of a diffusers pipeline (``unet`` or ``transformer``)."""
    for attr in ("unet", "transformer"):
        model = getattr(pipe, attr, None)
        if model is not None:
            return attr, model
    raise TypeError(f"{type(pipe).__name__} has no unet or transformer to accelerate")


def _entries(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, tuple)):
        return [value]
    if isinstance(value, list):
        return value
    raise TypeError(f"a technique is a name, (name, config) or a list of those; got {type(value).__name__}")


def _resolve(keyword: str, entry):
    """(Technique, config) from one entry under ``keyword``."""
    name, config = (entry, None) if isinstance(entry, str) else entry
    family = FAMILY_OF[keyword]
    if family in _PACKAGES:                       # families that register on import
        try:
            importlib.import_module(f"effdiff.{_PACKAGES[family]}")
        except ImportError:
            pass
    tech = T.get(name)
    if family is not None and tech.family != family:
        raise ValueError(f"{keyword}={name!r}: {name!r} is a {tech.family} technique, not {family}")
    if isinstance(config, dict):
        config = tech.make_config(**config)
    return tech, config


class Accelerated:
    """What ``accelerate`` returns: ``scheduler``, ``handles`` (name -> technique handle),
    ``stats`` (name -> its stats); ``remove()`` (or ``with``) restores the pipeline exactly."""

    def __init__(self, pipe, scheduler, old_scheduler, loop_handle, handles: dict):
        self.pipe, self.scheduler, self._old = pipe, scheduler, old_scheduler
        self._loop, self.handles = loop_handle, handles

    @property
    def stats(self) -> dict:
        return {n: h.stats for n, h in self.handles.items()}

    def remove(self) -> None:
        for h in reversed(list(self.handles.values())):
            h.remove()
        self.handles = {}
        if self._loop is not None:
            self._loop.remove()
            self._loop = None
        if self._old is not None:
            self.pipe.scheduler, self._old = self._old, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


def accelerate(pipe, solver: str = "dpmpp-2m", steps: int | None = None, schedule: str | None = None, *,
               solver_options: dict | None = None, schedule_options: dict | None = None, seed: int | None = None,
               **techniques) -> Accelerated:
    """Put ``EffdiffScheduler(solver, schedule, steps)`` into ``pipe`` and apply the named
    techniques (keywords: cache, quant, prune, early_exit, systems, distill, techniques) to its
    network; all-or-nothing. Returns the ``Accelerated`` handle."""
    unknown = sorted(set(techniques) - set(FAMILY_OF))
    if unknown:
        raise TypeError(f"accelerate() got an unexpected keyword {unknown[0]!r}; technique keywords: "
                        f"{', '.join(FAMILY_OF)}")
    chosen = [_resolve(k, e) for k, v in techniques.items() for e in _entries(v)]
    _, model = pipeline_model(pipe)
    scheduler = EffdiffScheduler.from_config(pipe.scheduler.config, solver=solver, schedule=schedule, steps=steps,
                                             solver_options=solver_options, schedule_options=schedule_options,
                                             seed=seed)
    denoiser = DiffusersDenoiser(model, pipe.scheduler)
    loop = scheduler.attach(model)            # outermost hook: techniques below it see the loop context
    handles: dict = {}
    try:
        for tech, config in chosen:
            handles[tech.name] = tech.apply(denoiser, config)
    except BaseException:
        for h in reversed(list(handles.values())):
            h.remove()
        loop.remove()
        raise
    old, pipe.scheduler = pipe.scheduler, scheduler
    return Accelerated(pipe, scheduler, old, loop, handles)
