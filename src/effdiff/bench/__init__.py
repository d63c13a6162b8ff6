"""``effdiff bench``: sweeps of sampling configurations on the zoo models, scored over several seeds
against held-out data in an independent network's features (``metrics.score``: FD, pixel FD,
per-class FD, class accuracy, memorization) and for cost (NFE, ms per sample, MACs).
Suites: ``default`` (config.py), ``solvers`` and ``parallel`` (solvers.py), ``caching``
(caching.py), ``retrieval`` (retrieval.py). See docs/evaluation.md."""
from .config import BenchConfig, SUITES, suite
from .runner import run, table
from .machine import machine
from . import solvers, caching, retrieval  # noqa: F401  (register their suites)

__all__ = ["BenchConfig", "run", "suite", "SUITES", "table", "machine"]
