"""Feature caches that hooks share: one store per applied method, keyed by (branch, site),
emptied whenever a new generation starts (so nothing leaks across requests or resolutions)."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..sampling import current_context, LoopContext
from .registry import ModelHook


def _nbytes(v) -> int:
    if torch.is_tensor(v):
        return v.numel() * v.element_size()
    if isinstance(v, (tuple, list)):
        return sum(_nbytes(u) for u in v)
    return 0


class CacheStore:
    """A dict (branch, site) -> value tied to one generation of ``ed.sample``."""

    def __init__(self):
        self.data: dict[tuple[str, str], Any] = {}
        self.generation: int | None = None
        self.peak_bytes = 0

    def sync(self, ctx: LoopContext) -> None:
        """Start empty on a new generation."""
        if ctx.generation != self.generation:
            self.data.clear()
            self.generation = ctx.generation

    def get(self, branch: str, site: str):
        return self.data.get((branch, site))

    def put(self, branch: str, site: str, value) -> None:
        self.data[(branch, site)] = value
        self.peak_bytes = max(self.peak_bytes, self.nbytes())

    def nbytes(self) -> int:
        """Bytes held now."""
        return sum(_nbytes(v) for v in self.data.values())

    def clear(self) -> None:
        self.data.clear()
        self.generation = None


def _same_shape(cached, like) -> bool:
    if torch.is_tensor(cached) and torch.is_tensor(like):
        return cached.shape == like.shape
    return cached is not None


class SiteCache(ModelHook):
    """Compute-or-reuse at one site. ``policy(ctx, site) -> bool`` says whether to compute
    (and refresh the cache); otherwise the cached output is returned. ``mode="residual"``
    caches ``output - input`` and reuses it as ``input + residual`` (Δ-DiT, block caching).
    Outside ``ed.sample`` (no loop context) it always computes and caches nothing."""

    def __init__(self, site: str, store: CacheStore, policy: Callable[[LoopContext, str], bool],
                 mode: str = "output", stats: dict | None = None, name: str = "cache"):
        if mode not in ("output", "residual"):
            raise ValueError(f"mode must be 'output' or 'residual', got {mode!r}")
        self.site, self.store, self.policy, self.mode, self.name = site, store, policy, mode, name
        self.stats = stats if stats is not None else {}

    def __call__(self, module: nn.Module, call_next, *args, **kwargs):
        ctx = current_context()
        if ctx is None:
            return call_next(*args, **kwargs)
        self.store.sync(ctx)
        x = args[0] if args else None
        cached = self.store.get(ctx.branch, self.site)
        fresh = cached is None or not _same_shape(cached, x if self.mode == "residual" else cached)
        if self.mode == "output" and cached is not None and torch.is_tensor(x) and torch.is_tensor(cached):
            fresh = fresh or cached.shape[0] != x.shape[0]
        if fresh or self.policy(ctx, self.site):
            out = call_next(*args, **kwargs)
            self.store.put(ctx.branch, self.site, out - x if self.mode == "residual" else out)
            self.stats["computed"] = self.stats.get("computed", 0) + 1
            return out
        self.stats["reused"] = self.stats.get("reused", 0) + 1
        return x + cached if self.mode == "residual" else cached


CacheHook = SiteCache
