"""``effdiff bench``: sweeps of sampling configurations on the zoo models, scored for quality
(FD in the zoo classifier's features, class accuracy) and cost (NFE, ms per sample, MACs)."""
from .runner import BenchConfig, run, suite, SUITES

__all__ = ["BenchConfig", "run", "suite", "SUITES"]
