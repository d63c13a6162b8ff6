"""One interface for everything that changes how a denoiser is evaluated, and its registry.

A ``Technique`` is a name, a family ("caching", "early-exit"; next "quant", "prune",
"distill", "systems"), a config dataclass, which models it applies to, and
``apply(denoiser, config=None, **fields) -> Handle``. The handle detaches it (``remove()``, or
``with``), carries typed ``stats`` (``CacheStats``, ``ExitStats``) and runs one generation with
it active (``handle.sample(...)``: ``ed.sample`` for hook-based methods). The bench suites and
the test matrix enumerate this registry::

    from effdiff import techniques as T
    T.names("caching")                           # ['adaptive', 'block-caching', 'deepcache', ...]
    [t.name for t in T.applicable(den)]          # what fits this model
    with T.get("deepcache").apply(den, interval=3) as h:
        x = h.sample(den, x_T, sigmas, "ddim", cond=labels)
    h.stats.reused

Techniques with trained or calibrated parts (the L2C router, DeeDiff's exit heads, block
caching's schedule) list the config fields they need in ``needs`` and fill them with
``prepare(denoiser, config, run)`` on a sampling ``Run``. ``exact(num_steps)`` is a config that
evaluates everything (bit-identical to no technique); ``eager(num_steps)`` one that reuses or
skips wherever the method allows (tests use it to see the technique act).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from .errors import UnknownName
from .hooks import CacheStats, ExitStats, Handle, Stats

FAMILIES = ("caching", "early-exit", "quant", "prune", "distill", "systems", "guidance", "attention")
STATS: dict[str, type[Stats]] = {"caching": CacheStats, "early-exit": ExitStats}

_REGISTRY: dict[str, "Technique"] = {}


@dataclass(frozen=True)
class Run:
    """A sampling run to calibrate or train on: ``ed.sample(denoiser or the model, x, sigmas,
    solver, cond, seed=seed)``."""
    x: Any
    sigmas: Any
    solver: str = "ddim"
    cond: Any = None
    denoiser: Any = None
    seed: int | None = None


@dataclass(frozen=True)
class Technique:
    """A registered technique. ``apply_fn(denoiser, config) -> Handle``; ``check(denoiser)``: why
    it does not apply (None when it does); ``needs``: config fields ``prepare_fn(denoiser,
    config, run, **budget) -> config`` fills; ``exact`` / ``eager``: num_steps -> config."""
    name: str
    family: str
    config: type
    apply_fn: Callable[[Any, Any], Handle]
    check: Callable[[Any], str | None]
    needs: tuple[str, ...] = ()
    prepare_fn: Callable | None = None
    exact: Callable[[int], Any] | None = None
    eager: Callable[[int], Any] | None = None
    paper: str = ""

    def why_not(self, denoiser) -> str | None:
        """Why this technique does not apply to ``denoiser`` (None: it applies)."""
        return self.check(denoiser)

    def applies_to(self, denoiser) -> bool:
        return self.check(denoiser) is None

    def make_config(self, config=None, **fields):
        """``config`` (default: ``self.config()``; a plain dict of its fields is converted) with
        ``fields`` replaced; TypeError on a wrong type or an unknown field (naming the valid ones)."""
        if isinstance(config, dict):
            config, fields = None, {**config, **fields}
        known = {f.name: str(f.type) for f in dataclasses.fields(self.config)}
        bad = sorted(set(fields) - set(known))
        if bad:
            raise TypeError(f"{self.name} has no option {bad[0]!r}; its options: {', '.join(known)}")
        fields = {k: tuple(v) if isinstance(v, list) and "tuple" in known[k] else v for k, v in fields.items()}
        if config is not None and not isinstance(config, self.config):
            raise TypeError(f"{self.name} takes a {self.config.__name__}, got {type(config).__name__}")
        c = config if config is not None else self.config()
        return dataclasses.replace(c, **fields) if fields else c

    def apply(self, denoiser, config=None, **fields) -> Handle:
        """Attach to ``denoiser`` (all-or-nothing) and return the ``Handle``."""
        c = self.make_config(config, **fields)
        missing = [n for n in self.needs if getattr(c, n) is None]
        if missing:
            raise ValueError(f"{self.name} needs {', '.join(missing)} in its {self.config.__name__}: "
                             f"run techniques.get({self.name!r}).prepare(denoiser, config, run) first")
        return self.apply_fn(denoiser, c)

    def prepare(self, denoiser, config=None, run: Run | None = None, **budget):
        """``config`` with the trained / calibrated parts in ``needs`` filled on ``run`` (returned
        unchanged when the technique needs none). ``budget``: trainer options (num_samples, iters)."""
        c = self.make_config(config)
        if self.prepare_fn is None:
            return c
        if run is None:
            raise ValueError(f"{self.name} calibrates or trains on a sampling run: pass run=techniques.Run(...)")
        return self.prepare_fn(denoiser, c, run, **budget)


def register(t: Technique) -> Technique:
    """Add ``t`` to the registry (a name registers once)."""
    if t.family not in FAMILIES:
        raise ValueError(f"unknown family {t.family!r}; known: {', '.join(FAMILIES)}")
    if not dataclasses.is_dataclass(t.config):
        raise TypeError(f"{t.name}: config must be a dataclass type, got {t.config!r}")
    old = _REGISTRY.get(t.name)
    if old is not None and old.apply_fn is not t.apply_fn:
        raise ValueError(f"a technique named {t.name!r} is already registered")
    _REGISTRY[t.name] = t
    return t


MODULES = ("caching", "early_exit", "systems", "quant", "prune", "guidance")   # the modules whose techniques register on import


def _load() -> None:
    """Import the modules whose techniques register themselves."""
    import importlib
    for m in MODULES:
        importlib.import_module(f"{__package__}.{m}")


def get(name: str) -> Technique:
    _load()
    if name not in _REGISTRY:
        raise UnknownName(f"unknown technique {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def names(family: str | None = None) -> list[str]:
    """Registered technique names (of one ``family``), sorted."""
    _load()
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    return sorted(n for n, t in _REGISTRY.items() if family is None or t.family == family)


def applicable(denoiser, family: str | None = None) -> list[Technique]:
    """The registered techniques (of ``family``) that apply to ``denoiser``, by name."""
    return [t for t in map(get, names(family)) if t.applies_to(denoiser)]


def apply(names_: list | str, denoiser, configs: dict | None = None) -> Handle:
    """Apply several techniques in order (a composition is a list of names, or of ``(name,
    config)`` pairs as in a plan's spec), all-or-nothing; ``configs``: name -> config (a config
    dataclass or a plain dict of its fields). One handle removes them all (in reverse order)."""
    names_ = [names_] if isinstance(names_, (str, tuple)) else list(names_)
    configs = configs or {}
    handles: list[Handle] = []
    try:
        for entry in names_:
            n, c = (entry, configs.get(entry)) if isinstance(entry, str) else entry
            handles.append(get(n).apply(denoiser, c))
    except BaseException:
        for h in reversed(handles):
            h.remove()
        raise
    if len(handles) == 1:
        return handles[0]
    return _Composed(handles)


class _Composed(Handle):
    """Several handles as one; ``stats``: name -> stats; ``sample`` goes through the last that routes."""

    def __init__(self, handles: list[Handle]):
        super().__init__("+".join(h.name for h in handles), [], None, {h.name: h.stats for h in handles})
        self.handles = handles
        self.routes_requests = any(h.routes_requests for h in handles)

    def sample(self, denoiser, x, sigmas, solver="euler", cond=None, **kw):
        routed = [h for h in self.handles if h.routes_requests]
        return (routed[-1] if routed else self.handles[-1]).sample(denoiser, x, sigmas, solver, cond, **kw)

    def remove(self) -> None:
        for h in reversed(self.handles):
            h.remove()
        self.handles = []
