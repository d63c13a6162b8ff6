"""Acceleration plans (issue 22): the composition spec, quality measures, the search space and
search, the plan file. ``Spec`` / ``parse_use`` are the one composition format the rest of
effdiff (``sample(plan=...)``, ``accelerate(pipe, plan=...)``, ``effdiff sample --use``) accepts."""
from .spec import Spec, parse_use

__all__ = ["Spec", "parse_use"]
