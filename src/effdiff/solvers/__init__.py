"""Solvers: a registry of step functions, and of a few solvers that own their loop.

A fixed-grid solver is one short **step function** (k-diffusion's readability, the driver's loop)::

    @register("euler")
    def euler(denoiser, x, step, state=None, *, s_churn=0.0, ...) -> (x_next, denoised, state)

``denoiser(x, sigma)`` is already bound to its condition and counted by the driver; ``step`` is a
``Step`` (index ``i`` of ``n``, ``sigma``, ``sigma_next``, the whole float64 ``sigmas`` and the
per-sample ``noise(like)``); ``state`` is whatever the previous step returned (multistep history),
``None`` on the first step the driver runs. The driver (``effdiff.sampling``) owns everything else:
the step index, the stage within a step, NFE counting, the final step to σ = 0 (by default it
returns ``D(x, σ_{n-1})``; ``final="step"`` hands that step to the function), callbacks, finite
and shape checks, per-sample noise and segments of a schedule (``start``/``stop``).

A solver that chooses its own grid or evaluates many steps at once (adaptive step size,
ParaDiGMS, ParaTAA, Restart) registers with ``loop=True`` and receives a ``Loop`` instead::

    @register("paradigms", loop=True)
    def sample_paradigms(loop, x, **options) -> x

Every registered solver is callable on its own: ``get("euler")(D, x, sigmas)`` runs it through
``ed.sample`` with its defaults.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

_REGISTRY: dict[str, "Solver"] = {}


@dataclass
class Step:
    """What a step function sees of the loop: step ``i`` of ``n`` from ``sigma`` to ``sigma_next``."""
    i: int
    n: int
    sigma: float
    sigma_next: float
    sigmas: torch.Tensor            # the whole schedule, float64, ending in 0
    noise: Callable | None = None   # noise(like) -> per-sample Gaussian noise
    sigma_hat: float | None = None  # set by solvers that raise σ before evaluating (EDM churn)


@dataclass(frozen=True)
class Solver:
    """A registered solver: ``fn`` (a step function, or a loop function when ``loop``), preset
    ``defaults``, and ``final``: "denoised" (the driver returns D on the step to σ=0) or "step"."""
    name: str
    fn: Callable
    defaults: dict
    loop: bool = False
    final: str = "denoised"

    @property
    def __doc__(self):  # the function's docstring, for help() and `effdiff solvers`
        return self.fn.__doc__

    def options(self, opts: dict) -> dict:
        """The defaults updated by ``opts``; an option the solver does not take is a TypeError."""
        known = _keyword_options(self.fn)
        if known is not None:
            unknown = sorted(set(opts) - known)
            if unknown:
                raise TypeError(f"solver {self.name!r} has no option {unknown[0]!r}; "
                                f"its options: {', '.join(sorted(known)) or 'none'}")
        return {**self.defaults, **opts}

    def __call__(self, denoiser, x, sigmas, **kwargs):
        """Run this solver on its own through ``ed.sample`` (kwargs: ``cond``, ``seed``, ``noise``,
        ``callback``, ``start``, ``stop`` and the solver's options)."""
        from ..sampling import sample
        return sample(denoiser, x, sigmas, solver=self, **kwargs)


def _keyword_options(fn) -> set[str] | None:
    """The keyword-only options of a solver function (None when it takes **kwargs)."""
    import inspect
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY}


def register(name: str, *, loop: bool = False, final: str = "denoised", **defaults):
    """Register ``fn`` under ``name`` (lower-case, dashes); ``defaults`` pre-set options, so one
    function can serve several names (``ddpm`` is ``ddim`` with eta=1)."""
    if name != name.lower() or " " in name or "_" in name:
        raise ValueError(f"solver names are lower-case with dashes, got {name!r}")
    if final not in ("denoised", "step"):
        raise ValueError(f"final must be 'denoised' or 'step', got {final!r}")

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"solver {name!r} is registered twice")
        _REGISTRY[name] = Solver(name, fn, dict(defaults), loop, final)
        return fn
    return deco


def get(name) -> Solver:
    """The solver registered as ``name`` (a ``Solver`` passes through; clear error for unknown names)."""
    if isinstance(name, Solver):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown solver {name!r}; known solvers: {', '.join(names())}") from None


def names() -> list[str]:
    """Every registered solver name, sorted."""
    return sorted(_REGISTRY)


def _load_all():
    """Import every module of this package: each registers its solvers on import."""
    import importlib
    import pkgutil
    for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not m.name.startswith("_"):
            importlib.import_module(f"{__name__}.{m.name}")


_load_all()
