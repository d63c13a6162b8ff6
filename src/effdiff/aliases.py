"""Module attributes that moved to a lower module: ``alias(__name__, target, "NAME")`` makes the old
module's ``NAME`` read and write the target's, so old import paths and monkeypatches (tests point
``zoo.WEIGHTS`` at a temporary folder) keep reaching the one definition."""
from __future__ import annotations

import sys
import types


def alias(module_name: str, target: types.ModuleType, *names: str) -> None:
    """Forward ``names`` of module ``module_name`` to the same names of ``target``."""
    module = sys.modules[module_name]
    props = {n: property(lambda self, n=n: getattr(target, n), lambda self, v, n=n: setattr(target, n, v))
             for n in names}
    module.__class__ = type(f"_Aliased_{module_name.replace('.', '_')}", (type(module),), props)
