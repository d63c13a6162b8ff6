"""Quality and cost metrics: every speed-up is reported beside the quality it costs."""

from .cost import NFECounter, latency, macs_per_sample, param_bytes, peak_memory, pinned_threads
from .quality import (
    Scorer,
    class_accuracy,
    class_features,
    frechet_distance,
    precision_recall,
    trajectory_error,
)
from .toy import exact_nll, sliced_wasserstein
from .convergence import convergence_order, reference_solve, solve_to

__all__ = [
    "frechet_distance",
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
    "NFECounter",
    "convergence_order",
    "reference_solve",
    "solve_to",
]
