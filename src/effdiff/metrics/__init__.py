"""Quality and cost metrics: every speed-up is reported beside the quality it costs."""
import importlib
import sys
import types

from .cost import latency, macs_per_sample, param_bytes, peak_memory, pinned_threads
from .quality import (
    Scorer,
    class_accuracy,
    class_features,
    fd_per_class,
    frechet_distance,
    frechet_from_stats,
    gaussian_stats,
    pca_basis,
    precision_recall,
    trajectory_error,
)
from .memorization import copy_ratio, memorization, nn_distances
from .toy import exact_nll, sliced_wasserstein
from .convergence import convergence_order, reference_solve, solve_to

__all__ = [
    "score",
    "Evaluation",
    "evaluation",
    "EVAL_NETS",
    "reference_stats",
    "memorization",
    "nn_distances",
    "copy_ratio",
    "frechet_distance",
    "frechet_from_stats",
    "gaussian_stats",
    "fd_per_class",
    "pca_basis",
    "class_features",
    "class_accuracy",
    "precision_recall",
    "trajectory_error",
    "Scorer",
    "exact_nll",
    "sliced_wasserstein",
    "macs_per_sample",
    "param_bytes",
    "latency",
    "pinned_threads",
    "peak_memory",
    "convergence_order",
    "reference_solve",
    "solve_to",
]

_LAZY = {"score": "evaluation", "Evaluation": "evaluation", "evaluation": "evaluation",
         "EVAL_NETS": "reference", "reference_stats": "reference"}


def __getattr__(name):      # the evaluation against shipped data loads on first use (PEP 562)
    if name in _LAZY:
        mod = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Metrics(types.ModuleType):
    """``metrics.evaluation`` stays the function: the import system binds the submodule of the same
    name on the package when it is first imported, and this keeps the function in its place."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and name in _LAZY and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Metrics
