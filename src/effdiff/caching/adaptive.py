"""Adaptive whole-network caching in the TeaCache (Liu et al. 2024) / first-block-cache style.

Each evaluation first runs a cheap probe: the first block's output residual ("first-block";
a UNet's ``input_blocks[0]`` output, which has no skip) or the time-modulated input of a DiT's
first attention ("modulated-input", TeaCache's indicator). The relative L1 change of the probe
from the previous evaluation of the same branch is accumulated since the last full computation;
while it stays below ``threshold`` the rest of the network is skipped and its cached residual
``Δ = out(last block) - out(first block)`` is added to the first block's current output.

Design: the probe's decision goes into ``current_context().state`` and a ``SpanCache`` over the
rest of the network reads it, so every hooked site agrees within one evaluation. The first block
always computes (it is the probe). For our UNet the span is ``input_blocks[1:]``, the middle
block and all ``output_blocks``; ``output_blocks[-1]`` returns ``h0 + Δ`` (same shape as
``input_blocks[0]``'s output ``h0``) and the output head runs as usual. TeaCache's fitted
polynomial rescaling of the probe distance is not used (it needs per-model coefficients).
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import sites
from ..context import current_context
from ..hooks import CacheStats, CacheStore, Handle, ModelHook, SpanCache, attach
from ..techniques import Technique, register
from .block_caching import rel_l1

PROBES = ("first-block", "modulated-input")


@dataclass
class AdaptiveCacheConfig:
    """threshold: reuse while the accumulated relative L1 change of the probe stays below it
    (0 computes every evaluation); probe: "first-block" or "modulated-input" (DiT only)."""
    threshold: float = 0.1
    probe: str = "first-block"


class _Probe(ModelHook):
    """Runs the probe module, accumulates the probe's relative change and decides for this evaluation."""

    def __init__(self, c: AdaptiveCacheConfig, store: CacheStore, key: str):
        self.c, self.store, self.key = c, store, key

    def __call__(self, module, call_next, *args, **kwargs):
        out = call_next(*args, **kwargs)
        ctx = current_context()
        if ctx is None:
            return out
        x = args[0]
        p = x if self.c.probe == "modulated-input" else (out - x if out.shape == x.shape else out)
        prev = self.store.get(ctx, ctx.branch, "probe")
        acc_key = (self.key, "acc", ctx.branch)
        if prev is None or prev.shape != p.shape:
            compute, acc = True, 0.0
        else:
            acc = ctx.state.get(acc_key, 0.0) + rel_l1(p, prev)
            compute = acc >= self.c.threshold
        ctx.state[acc_key] = 0.0 if compute else acc
        ctx.state[(self.key, ctx.branch)] = (ctx.nfe, compute)
        self.store.put(ctx, ctx.branch, "probe", p)
        return out


def _probe_and_rest(model, probe: str):
    """(probe module, the modules of the skipped span) for a UNet or a DiT."""
    u = sites.find_unet(model)
    if u is not None:
        if probe != "first-block":
            raise ValueError(f"probe {probe!r} needs a DiT; a UNet supports probe='first-block'")
        return u.input_blocks[0], [*u.input_blocks[1:], u.middle_block, *u.output_blocks]
    blocks = sites.dit_blocks(model, "adaptive caching")
    if len(blocks) < 2:
        raise TypeError(f"adaptive caching needs >= 2 transformer blocks, got {len(blocks)}")
    return (blocks[0] if probe == "first-block" else sites.sublayer(blocks[0], "attn")), list(blocks[1:])


def apply_adaptive_cache(model, config: AdaptiveCacheConfig | None = None) -> Handle:
    c = config or AdaptiveCacheConfig()
    if c.probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {c.probe!r}")
    if c.threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {c.threshold}")
    probe_mod, rest = _probe_and_rest(model, c.probe)
    stats = CacheStats()
    store = CacheStore(stats)
    key = f"adaptive-{id(store)}"

    def policy(ctx, site):
        nfe, compute = ctx.state.get((key, ctx.branch), (None, True))
        return compute or nfe != ctx.nfe

    span = SpanCache("rest", store, policy, stats)
    return attach("adaptive-cache", [(probe_mod, _Probe(c, store, key))] + span.hooks(rest), store, stats)


def _check(model) -> str | None:
    if sites.find_unet(model) is not None:
        return None
    found = sites.find_dit_blocks(model)
    return None if found is not None and len(found[1]) >= 2 else "needs a UNet or a transformer with >= 2 blocks"


register(Technique("adaptive", "caching", AdaptiveCacheConfig, apply_adaptive_cache, _check,
                   exact=lambda n: AdaptiveCacheConfig(threshold=0.0), eager=lambda n: AdaptiveCacheConfig(threshold=1.0),
                   paper="Liu et al. 2024, TeaCache"))
