"""``effdiff bench``: sweeps of sampling configurations on the zoo models, scored over several seeds
against held-out data in an independent network's features (``metrics.score``: FD, pixel FD,
per-class FD, class accuracy, memorization) and for cost (NFE, ms per sample, MACs).
Suites: ``default`` (config.py); ``solvers`` and ``parallel`` (solvers.py), ``caching``,
``retrieval``, ``compress``, ``distill``, ``distributed``, ``finetune``, ``systems`` (one module
each, imported when the suite runs: ``config.SUITE_MODULES``). See docs/evaluation.md."""
from .config import BenchConfig, SUITES, SUITE_MODULES, load_suite, suite
from .runner import run, table
from .machine import machine

__all__ = ["BenchConfig", "run", "suite", "load_suite", "SUITES", "SUITE_MODULES", "table", "machine"]
