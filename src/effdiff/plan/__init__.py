"""Acceleration plans (issue 22): the composition spec, quality measures, the search space and
search, the plan file.

    p = ed.plan(den, budget="5%")          # this package is callable: ed.plan(...) is search.plan
    p.save("plan.json"); ed.plan.verify("plan.json", den).holds

``Spec`` / ``parse_use`` are the one composition format the rest of effdiff accepts
(``sample(plan=...)``, ``accelerate(pipe, plan=...)``, ``effdiff sample --use``)."""
import sys
import types

from .spec import Spec, parse_use


def __getattr__(name):            # the search and the file load on first use (they import the bench's scoring)
    import importlib
    if name in ("search", "file", "quality", "space"):
        return importlib.import_module(f".{name}", __name__)
    if name in ("plan", "certify", "Settings", "External"):
        return getattr(importlib.import_module(".search", __name__), name)
    if name in ("Plan", "verify", "WeightsMismatch", "load"):
        mod = importlib.import_module(".file", __name__)
        return mod.Plan.load if name == "load" else getattr(mod, name)
    if name == "Space":
        return importlib.import_module(".space", __name__).Space
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallablePackage(types.ModuleType):
    """``effdiff.plan`` is both this package and the function ``ed.plan(denoiser, budget=...)``."""

    def __call__(self, *args, **kwargs):
        from .search import plan
        return plan(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

__all__ = ["Spec", "parse_use", "plan", "certify", "Plan", "verify", "WeightsMismatch", "Settings", "Space",
           "External", "load"]
