"""Feature caches that hooks share: one store per applied method, keyed by (branch, site) within
one generation of ``ed.sample``. Each generation (``LoopContext.generation``: one per ``sample()``
call, per thread) has its own entries, dropped when that generation's context is gone, so
concurrent requests on one model never see or clear each other's features."""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable

import torch
from torch import nn

from ..context import current_context, LoopContext
from .registry import ModelHook
from .stats import CacheStats


def _nbytes(v) -> int:
    if torch.is_tensor(v):
        return v.numel() * v.element_size()
    if isinstance(v, (tuple, list)):
        return sum(_nbytes(u) for u in v)
    return 0


class CacheStore:
    """Per generation, a dict (branch, site) -> value. A generation's entries start empty and go
    when its loop context is released (the end of its ``sample()`` call)."""

    def __init__(self, stats: CacheStats | None = None):
        self.data: dict[int, dict[tuple[str, str], Any]] = {}
        self.stats = stats
        self.peak_bytes = 0
        self._lock = threading.Lock()

    def _of(self, ctx: LoopContext) -> dict:
        gen = self.data.get(ctx.generation)
        if gen is None:
            with self._lock:
                gen = self.data.setdefault(ctx.generation, {})
            weakref.finalize(ctx, self._drop, ctx.generation)
        return gen

    def _drop(self, generation: int) -> None:
        with self._lock:
            self.data.pop(generation, None)

    def get(self, ctx: LoopContext, branch: str, site: str):
        return self._of(ctx).get((branch, site))

    def put(self, ctx: LoopContext, branch: str, site: str, value) -> None:
        self._of(ctx)[(branch, site)] = value
        n = self.nbytes()
        with self._lock:
            self.peak_bytes = max(self.peak_bytes, n)
        if self.stats is not None:
            self.stats.peak("peak_bytes", n)

    def nbytes(self) -> int:
        """Bytes held now (all generations in progress)."""
        with self._lock:
            gens = [list(g.values()) for g in self.data.values()]
        return sum(_nbytes(v) for g in gens for v in g)

    def clear(self) -> None:
        with self._lock:
            self.data.clear()


def _same_shape(cached, like) -> bool:
    if torch.is_tensor(cached) and torch.is_tensor(like):
        return cached.shape == like.shape
    return cached is not None


class SiteCache(ModelHook):
    """Compute-or-reuse at one site. ``policy(ctx, site) -> bool`` says whether to compute
    (and refresh the cache); otherwise the cached output is returned. ``mode="residual"``
    caches ``output - input`` and reuses it as ``input + residual`` (Δ-DiT, block caching).
    ``adjust(ctx, site, cached) -> cached`` (optional) corrects a reused value before use
    (block caching's scale-shift alignment).
    Outside ``ed.sample`` (no loop context) it always computes and caches nothing."""

    def __init__(self, site: str, store: CacheStore, policy: Callable[[LoopContext, str], bool],
                 mode: str = "output", stats: CacheStats | None = None,
                 adjust: Callable[[LoopContext, str, Any], Any] | None = None):
        if mode not in ("output", "residual"):
            raise ValueError(f"mode must be 'output' or 'residual', got {mode!r}")
        self.site, self.store, self.policy, self.mode = site, store, policy, mode
        self.stats = stats if stats is not None else CacheStats()
        self.adjust = adjust

    def __call__(self, module: nn.Module, call_next, *args, **kwargs):
        ctx = current_context()
        if ctx is None:
            return call_next(*args, **kwargs)
        x = args[0] if args else None
        cached = self.store.get(ctx, ctx.branch, self.site)
        fresh = cached is None or not _same_shape(cached, x if self.mode == "residual" else cached)
        if self.mode == "output" and cached is not None and torch.is_tensor(x) and torch.is_tensor(cached):
            fresh = fresh or cached.shape[0] != x.shape[0]
        if fresh or self.policy(ctx, self.site):
            out = call_next(*args, **kwargs)
            self.store.put(ctx, ctx.branch, self.site, out - x if self.mode == "residual" else out)
            self.stats.add(computed=1)
            return out
        self.stats.add(reused=1)
        if self.adjust is not None:
            cached = self.adjust(ctx, self.site, cached)
        return x + cached if self.mode == "residual" else cached



class SpanCache:
    """Compute-or-reuse over a chain of modules as one site (Δ-Cache of Δ-DiT, Chen et al.
    2024; TeaCache's whole-network residual): caches ``Δ = out(last) - in(first)`` and on
    reuse skips every module of the span, returning ``in(first) + Δ``. The decision is taken
    once per evaluation by the first module (``policy(ctx, site)``) and kept in
    ``ctx.state`` so all modules of the span agree. The span's inner outputs must be consumed
    only inside the span (a DiT's blocks; a UNet's blocks after ``input_blocks[0]``): skipped
    modules return an empty placeholder ``x[:, :0]``. ``stats``: computed / reused span
    evaluations."""

    def __init__(self, site: str, store: CacheStore, policy: Callable[[LoopContext, str], bool],
                 stats: CacheStats | None = None):
        self.site, self.store, self.policy = site, store, policy
        self.stats = stats if stats is not None else CacheStats()

    def hooks(self, modules) -> list[tuple[nn.Module, ModelHook]]:
        """The (module, hook) pairs over ``modules`` (in call order), for ``hooks.attach``."""
        modules = list(modules)
        if not modules:
            raise ValueError(f"span {self.site!r} is empty")
        return [(m, _SpanHook(self, k == 0, k == len(modules) - 1)) for k, m in enumerate(modules)]

    def _key(self, ctx: LoopContext):
        return ("span", id(self), ctx.branch)


class _SpanHook(ModelHook):
    def __init__(self, span: SpanCache, head: bool, tail: bool):
        self.span, self.head, self.tail = span, head, tail

    def __call__(self, module: nn.Module, call_next, *args, **kwargs):
        ctx, span = current_context(), self.span
        if ctx is None:
            return call_next(*args, **kwargs)
        key = span._key(ctx)
        if self.head:
            x = args[0]
            cached = span.store.get(ctx, ctx.branch, span.site)
            compute = cached is None or cached.shape != x.shape or bool(span.policy(ctx, span.site))
            ctx.state[key] = (ctx.nfe, compute, x)
            span.stats.add(**{"computed" if compute else "reused": 1})
        else:
            nfe, compute, x = ctx.state.get(key, (None, True, None))
            if nfe != ctx.nfe:
                raise RuntimeError(f"span {span.site!r}: a module ran without the span's first module; "
                                   "its inner outputs must not be used outside the span")
        if compute:
            out = call_next(*args, **kwargs)
            if self.tail:
                if out.shape != x.shape:
                    raise ValueError(f"span {span.site!r}: the last output {tuple(out.shape)} must have the "
                                     f"first input's shape {tuple(x.shape)} to cache their residual")
                span.store.put(ctx, ctx.branch, span.site, out - x)
                del ctx.state[key]
            return out
        if self.tail:
            del ctx.state[key]
            return x + span.store.get(ctx, ctx.branch, span.site)
        return args[0][:, :0]
