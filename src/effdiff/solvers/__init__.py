"""Solvers: one plain function each, ``solver(denoiser, x, sigmas, *, noise, callback, **opts) -> x``.

``denoiser(x, sigma)`` is already bound to its condition by ``ed.sample``; ``sigmas`` is a
float64 1-D tensor ending in 0; ``noise(like)`` draws per-sample Gaussian noise; ``callback``
must be called once at the end of every step with ``{"x", "i", "sigma", "sigma_hat", "denoised"}``
(the loop context advances on it). Register a new solver with ``@register("name")``.
"""
from __future__ import annotations

from typing import Callable

_REGISTRY: dict[str, Callable] = {}


def register(name: str, **defaults):
    """Register ``fn`` under ``name`` (lower-case, dashes); ``defaults`` pre-set options,
    so one function can serve several names (``ddpm`` is ``ddim`` with eta=1)."""
    if name != name.lower() or " " in name or "_" in name:
        raise ValueError(f"solver names are lower-case with dashes, got {name!r}")

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"solver {name!r} is registered twice")
        if defaults:
            def bound(denoiser, x, sigmas, **opts):
                return fn(denoiser, x, sigmas, **{**defaults, **opts})
            bound.__doc__, bound.__name__, bound.base = fn.__doc__, fn.__name__, fn
            _REGISTRY[name] = bound
        else:
            _REGISTRY[name] = fn
        return fn
    return deco


def get(name: str) -> Callable:
    """The solver function registered as ``name`` (a clear error for unknown names)."""
    try:
        return _REGISTRY[name]
    except KeyError:
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
