"""Quality and cost metrics: every speed-up is reported beside the quality it costs."""

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
from .evaluation import Evaluation, evaluation, score
from .reference import EVAL_NETS, reference_stats
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
