"""``effdiff.accelerate(pipe, ...)``: an effdiff solver and any registered techniques on a
diffusers pipeline in one call, undone exactly by ``remove()``::

    h = effdiff.accelerate(pipe, solver="dpmpp-2m", cache="deepcache")
    image = pipe(prompt, num_inference_steps=20).images[0]     # the call's step count, as in diffusers
    h.stats["deepcache"].reused      # this call's counts (h.total: the running total)
    h.remove()                       # the pipeline is the original again, scheduler included

``steps=N`` pins the step count for every call instead (a call asking for another count is
warned). The pipeline may be called from several threads at once: each call keeps its own
grid, history and loop context (see ``EffdiffScheduler``).

A technique is named as registered (``effdiff.techniques.names()``), as ``(name, config)``
(a config dataclass or a dict of its fields), or a list of these. The keyword says its family
(``cache`` -> caching, ``quant``, ``prune``, ``early_exit``, ``systems``, ``distill``);
``techniques=`` takes any. Techniques attach to the pipeline's ``unet`` / ``transformer`` seen
as a ``DiffusersDenoiser``; the scheduler runs the model inside effdiff's loop context so
caches see the true step.
"""
from __future__ import annotations

import dataclasses
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


def _counters(stats) -> dict:
    """The numeric fields of a technique's stats (empty for stats that are not a dataclass)."""
    if not dataclasses.is_dataclass(stats):
        return {}
    return {f.name: getattr(stats, f.name) for f in dataclasses.fields(stats)
            if not f.name.startswith("_") and isinstance(getattr(stats, f.name), (int, float))}


def _per_call(stats, at_apply: dict, at_start: dict):
    """``stats`` as seen by one call: a field that has moved since ``apply`` is a counter and
    shows its change since the call started; a high-water mark (``peak_*``) or a field set once at
    apply time (bytes, layers converted) shows its value."""
    now = _counters(stats)
    if not now:
        return stats
    moved = {k: v - at_start.get(k, 0) for k, v in now.items()
             if not k.startswith("peak") and v != at_apply.get(k, v)}
    return dataclasses.replace(stats, **moved)


class Accelerated:
    """What ``accelerate`` returns: ``scheduler``, ``handles`` (name -> technique handle),
    ``stats`` (name -> its stats for the latest pipeline call of this thread), ``total`` (name ->
    the running total over all calls); ``remove()`` (or ``with``) restores the pipeline exactly."""

    def __init__(self, pipe, scheduler, old_scheduler, loop_handle, handles: dict):
        self.pipe, self.scheduler, self._old = pipe, scheduler, old_scheduler
        self._loop, self.handles = loop_handle, handles
        self._at_apply = self._snapshot()
        scheduler.listeners.append(self._call_started)

    def _snapshot(self) -> dict:
        return {n: _counters(h.stats) for n, h in self.handles.items()}

    def _call_started(self, run) -> None:
        run.extra["stats"] = self._snapshot()

    @property
    def total(self) -> dict:
        """name -> the technique's stats summed over every call since ``accelerate``."""
        return {n: h.stats for n, h in self.handles.items()}

    @property
    def stats(self) -> dict:
        """name -> the technique's stats for the latest call made from this thread (counters since
        that call started; exact when calls do not overlap; ``total`` is always exact)."""
        run = self.scheduler._run()
        start = run.extra.get("stats", self._at_apply) if run is not None else self._snapshot()
        return {n: _per_call(h.stats, self._at_apply[n], start.get(n, {})) for n, h in self.handles.items()}

    def remove(self) -> None:
        for h in reversed(list(self.handles.values())):
            h.remove()
        self.handles = {}
        if self._loop is not None:
            self._loop.remove()
            self._loop = None
        if self._call_started in self.scheduler.listeners:
            self.scheduler.listeners.remove(self._call_started)
        if self._old is not None:
            self.pipe.scheduler, self._old = self._old, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


def _from_plan(pipe, model, plan, solver, steps, schedule, techniques):
    """(solver, steps, schedule, solver_options, schedule_options, techniques) from ``plan`` (a Spec,
    plan file, spec file or list of 'name:k=v'); it decides alone, so other arguments are an error."""
    from ..plan.use import as_spec
    if solver != "dpmpp-2m" or steps is not None or schedule is not None or techniques:
        raise TypeError("accelerate(pipe, plan=...): the plan decides solver, steps, schedule and techniques; "
                        "pass either plan= or those arguments")
    spec = as_spec(plan, DiffusersDenoiser(model, pipe.scheduler))
    if spec.model is not None:
        raise ValueError(f"this plan samples another model ({spec.model!r}); accelerate() keeps the pipeline's")
    return (spec.solver, spec.steps, spec.schedule, spec.solver_options, spec.schedule_options,
            {"techniques": list(spec.techniques)})


def accelerate(pipe, solver: str = "dpmpp-2m", steps: int | None = None, schedule: str | None = None, *,
               solver_options: dict | None = None, schedule_options: dict | None = None, seed: int | None = None,
               plan=None, **techniques) -> Accelerated:
    """Put ``EffdiffScheduler(solver, schedule, steps)`` into ``pipe`` and apply the named
    techniques (keywords: cache, quant, prune, early_exit, systems, distill, techniques) to its
    network; all-or-nothing. ``steps``: None follows each call's ``num_inference_steps``; a number
    pins it (calls asking for another count are warned). ``plan``: a ``Spec``, a plan or spec file,
    or a list of 'name:key=value' strings (effdiff.plan) deciding all of these (its steps pinned).
    Returns the ``Accelerated`` handle."""
    unknown = sorted(set(techniques) - set(FAMILY_OF))
    if unknown:
        raise TypeError(f"accelerate() got an unexpected keyword {unknown[0]!r}; technique keywords: "
                        f"{', '.join(FAMILY_OF)}")
    _, model = pipeline_model(pipe)
    if plan is not None:
        solver, steps, schedule, solver_options, schedule_options, techniques = _from_plan(
            pipe, model, plan, solver, steps, schedule, techniques)
    chosen = [_resolve(k, e) for k, v in techniques.items() for e in _entries(v)]
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
