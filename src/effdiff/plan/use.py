"""A plan wherever effdiff samples: ``as_spec`` turns what a user hands over (a ``Spec``, a
``Plan``, a dict, a JSON text, a path to a plan or spec file, a list of ``--use`` strings) into
the one ``Spec``; ``run`` is what ``ed.sample(denoiser, x, plan=...)`` calls.

    ed.sample(den, z, plan="plan.json", cond=labels, seed=0)     # z: unit noise [B, C, H, W]
    spec = as_spec(["deepcache:interval=3", "int8"], base=Spec("dpmpp-2m", 10))
"""
from __future__ import annotations

import json
from pathlib import Path

from .spec import FORMAT as SPEC_FORMAT, Spec

__all__ = ["as_spec", "run"]


def _from_dict(d: dict, den):
    from .file import FORMAT as PLAN_FORMAT, Plan
    fmt = d.get("format", SPEC_FORMAT)
    if fmt == PLAN_FORMAT:
        raise ValueError("a plan dict needs its file (calibrated tensors live beside it): pass the path instead")
    return Spec.from_dict(d)


def as_spec(plan, denoiser=None, base: Spec | None = None) -> Spec:
    """The ``Spec`` of ``plan``. A ``Plan`` (or a plan file) is checked against ``denoiser``'s
    weights when one is given (``WeightsMismatch`` otherwise); a list of 'name:key=value' strings
    is added to ``base`` (default ``Spec()``)."""
    from .file import FORMAT as PLAN_FORMAT, Plan
    if isinstance(plan, Spec):
        return plan
    if isinstance(plan, Plan):
        if denoiser is not None:
            plan._usable(denoiser)
        elif plan.spec is None:
            raise ValueError("this plan holds no certified composition")
        return plan.spec
    if isinstance(plan, dict):
        return _from_dict(plan, denoiser)
    if isinstance(plan, (list, tuple)) and all(isinstance(e, str) for e in plan):
        return (base or Spec()).use(*plan)
    if isinstance(plan, (str, Path)):
        text = str(plan).strip()
        if text.startswith("{"):
            return _from_dict(json.loads(text), denoiser)
        from ..io import read_json
        path = Path(plan)
        if not path.is_file():
            raise FileNotFoundError(f"no plan or spec file {str(path)!r}")
        d = read_json(path, "plan or spec file")
        if d.get("format") == PLAN_FORMAT:
            return as_spec(Plan.load(path), denoiser)
        try:
            return _from_dict(d, denoiser)
        except (ValueError, TypeError, KeyError) as e:      # name the file the user handed over
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise ValueError(f"{path}: {msg}") from None
    raise TypeError(f"a plan is a Spec, a Plan, a dict, a path or a list of 'name:key=value' strings; "
                    f"got {type(plan).__name__}")


def run(plan, denoiser, x, cond=None, *, seed=None, return_info: bool = False, **kw):
    """``ed.sample(denoiser, x, plan=plan, ...)``: ``x`` is unit noise; the plan's schedule, solver,
    guidance and techniques (applied for this call, then removed)."""
    spec = as_spec(plan, denoiser)
    return spec.sample(denoiser, x, cond, seed, return_info=return_info, **kw)
