"""Studies: measurements beyond a suite's rows (training runs, ablations, recipe selections, one-off
comparisons behind a number in the docs), each a registered ``main(argv)`` on the bench harness.

    python -m effdiff.bench.studies                      # the list
    python -m effdiff.bench.studies depth-kd --model digits-unet
    effdiff bench --study depth-kd --model digits-unet

A study registers with ``@register("name")`` in a module of this package (``MODULES`` names the module,
imported on first use); it takes a model by name and never assumes its image shape.
"""
from __future__ import annotations

import importlib
from typing import Callable

from ...errors import UnknownName

STUDIES: dict[str, Callable] = {}
#: study -> the module of this package that registers it
MODULES = {"assign-time": "training", "ot-toy": "training", "priorgrad-check": "training", "step-cost": "training",
           "finetune-eval": "finetune", "finetune-eval-mnist": "finetune", "lora-long": "finetune",
           "lora-on-student": "finetune", "compress-rows": "compress", "compress-peaks": "compress",
           "compress-inject": "compress", "depth-kd": "compress", "select-ptq": "compress",
           "prune-depth": "prune_depth", "quant-extra": "quant_extra", "distill-fresh-seeds": "distill",
           "latent-candidates": "latent", "latent-compare": "latent", "video": "video",
           "guidance-scale-sweep": "guidance", "guidance-mg-rows": "guidance", "guidance-distill-rows": "guidance",
           "caching-learned": "caching"}


def register(name: str):
    """Decorator: ``@register("depth-kd") def main(argv=None)``."""
    def deco(fn: Callable) -> Callable:
        STUDIES[name] = fn
        return fn
    return deco


def names() -> list[str]:
    return sorted(set(STUDIES) | set(MODULES))


def get(name: str) -> Callable:
    """The study ``name`` (``KeyError`` naming the known studies)."""
    if name not in STUDIES and name in MODULES:
        importlib.import_module(f"{__name__}.{MODULES[name]}")
    if name not in STUDIES:
        raise UnknownName(f"unknown bench study {name!r}; known studies: {', '.join(names())}")
    return STUDIES[name]


def main(argv=None) -> int:
    """``python -m effdiff.bench.studies NAME [ARGS]`` (no NAME: list the studies with their first doc line)."""
    import sys
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        for n in names():
            doc = (get(n).__doc__ or "").strip().split("\n")[0]
            print(f"{n:22s} {doc}")
        return 0
    get(argv[0])(argv[1:])
    return 0
