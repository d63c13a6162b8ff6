"""Typed counters that a technique's ``Handle`` carries (one small dataclass per family).

Counters are updated under a lock: concurrent ``ed.sample`` calls on one model add up exactly.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields


@dataclass
class Stats:
    """Base: ``add(name=n, ...)`` increments counters atomically; ``as_dict()`` for reports."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def peak(self, name: str, value: int) -> None:
        """Raise counter ``name`` to ``value`` if larger (a high-water mark)."""
        with self._lock:
            setattr(self, name, max(getattr(self, name), value))

    def as_dict(self) -> dict:
        """Counters and derived rates, JSON-ready."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        d.update({k: getattr(self, k) for k in getattr(self, "derived", ())})
        return d


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


@dataclass
class CacheStats(Stats):
    """Caching: ``computed`` / ``reused`` evaluations of the cached sites (site calls for feature
    caches, denoiser evaluations for request-level caches) and ``peak_bytes`` held by the cache."""
    computed: int = 0
    reused: int = 0
    peak_bytes: int = 0
    derived = ("reuse_fraction",)

    @property
    def reuse_fraction(self) -> float:
        return _ratio(self.reused, self.reused + self.computed)


@dataclass
class ExitStats(Stats):
    """Early exit: block calls ``computed`` / ``skipped`` (static dropping), and ``layers`` run
    over ``evaluations`` (per sample, per network call; per-sample exits)."""
    computed: int = 0
    skipped: int = 0
    layers: int = 0
    evaluations: int = 0
    derived = ("skip_fraction", "avg_layers")

    @property
    def skip_fraction(self) -> float:
        return _ratio(self.skipped, self.skipped + self.computed)

    @property
    def avg_layers(self) -> float:
        return _ratio(self.layers, self.evaluations)
