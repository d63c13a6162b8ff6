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

from ..sampling import Solver, Step, get, names, register

__all__ = ["Solver", "Step", "get", "names", "register"]


def _load_all():
    """Import every module of this package: each registers its solvers on import."""
    import importlib
    import pkgutil
    for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not m.name.startswith("_"):
            importlib.import_module(f"{__name__}.{m.name}")


_load_all()
