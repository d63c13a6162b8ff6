"""Feature caches that hooks share: one store per applied method, keyed by (branch, site),
emptied whenever a new generation starts (so nothing leaks across requests or resolutions)."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..sampling import current_context, LoopContext
from .registry import ModelHook, add_hook


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
    ``adjust(ctx, site, cached) -> cached`` (optional) corrects a reused value before use
    (block caching's scale-shift alignment).
    Outside ``ed.sample`` (no loop context) it always computes and caches nothing."""

    def __init__(self, site: str, store: CacheStore, policy: Callable[[LoopContext, str], bool],
                 mode: str = "output", stats: dict | None = None, name: str = "cache",
                 adjust: Callable[[LoopContext, str, Any], Any] | None = None):
        if mode not in ("output", "residual"):
            raise ValueError(f"mode must be 'output' or 'residual', got {mode!r}")
        self.site, self.store, self.policy, self.mode, self.name = site, store, policy, mode, name
        self.stats = stats if stats is not None else {}
        self.adjust = adjust

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
        if self.adjust is not None:
            cached = self.adjust(ctx, self.site, cached)
        return x + cached if self.mode == "residual" else cached


CacheHook = SiteCache


class SpanCache:
    """Compute-or-reuse over a chain of modules as one site (Δ-Cache of Δ-DiT, Chen et al.
    2024; TeaCache's whole-network residual): caches ``Δ = out(last) - in(first)`` and on
    reuse skips every module of the span, returning ``in(first) + Δ``. The decision is taken
    once per evaluation by the first module (``policy(ctx, site)``) and kept in
    ``ctx.state`` so all modules of the span agree. The span's inner outputs must be consumed
    only inside the span (a DiT's blocks; a UNet's blocks after ``input_blocks[0]``): skipped
    modules return an empty placeholder ``x[:, :0]``. ``stats``: computed / reused span
    evaluations and their ``reuse_fraction``."""

    def __init__(self, site: str, store: CacheStore, policy: Callable[[LoopContext, str], bool],
                 stats: dict | None = None, name: str = "span"):
        self.site, self.store, self.policy, self.name = site, store, policy, name
        self.stats = stats if stats is not None else {}

    def attach(self, modules) -> list[tuple[nn.Module, str]]:
        """Hook ``modules`` (in call order); returns the (module, hook name) pairs for a Handle."""
        modules = list(modules)
        if not modules:
            raise ValueError(f"span {self.site!r} is empty")
        return [(m, add_hook(m, _SpanHook(self, k == 0, k == len(modules) - 1), self.name))
                for k, m in enumerate(modules)]

    def _key(self, ctx: LoopContext):
        return ("span", id(self), ctx.branch)


class _SpanHook(ModelHook):
    def __init__(self, span: SpanCache, head: bool, tail: bool):
        self.span, self.head, self.tail, self.name = span, head, tail, span.name

    def __call__(self, module: nn.Module, call_next, *args, **kwargs):
        ctx, span = current_context(), self.span
        if ctx is None:
            return call_next(*args, **kwargs)
        key = span._key(ctx)
        if self.head:
            span.store.sync(ctx)
            x = args[0]
            cached = span.store.get(ctx.branch, span.site)
            compute = cached is None or cached.shape != x.shape or bool(span.policy(ctx, span.site))
            ctx.state[key] = (ctx.nfe, compute, x)
            k = "computed" if compute else "reused"
            span.stats[k] = span.stats.get(k, 0) + 1
            span.stats["reuse_fraction"] = span.stats.get("reused", 0) / (
                span.stats.get("reused", 0) + span.stats.get("computed", 0))
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
                span.store.put(ctx.branch, span.site, out - x)
                del ctx.state[key]
            return out
        if self.tail:
            del ctx.state[key]
            return x + span.store.get(ctx.branch, span.site)
        return args[0][:, :0]
