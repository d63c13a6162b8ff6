"""``effdiff bench``: sweeps of sampling configurations on the zoo models, scored for quality
(FD in the zoo classifier's features, class accuracy) and cost (NFE, ms per sample, MACs).
Suites: ``default`` (runner.py), ``solvers`` and ``parallel`` (solvers.py), ``caching``
(caching.py), ``retrieval`` (retrieval.py)."""
from .runner import BenchConfig, run, suite, SUITES, table
from . import solvers, caching, retrieval  # noqa: F401  (register their suites)

__all__ = ["BenchConfig", "run", "suite", "SUITES", "table"]
