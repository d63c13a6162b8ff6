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

from ..hooks import CacheStore, Handle, ModelHook, SpanCache, add_hook
from ..sampling import current_context
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
        self.c, self.store, self.key, self.name = c, store, key, "adaptive-cache"

    def __call__(self, module, call_next, *args, **kwargs):
        out = call_next(*args, **kwargs)
        ctx = current_context()
        if ctx is None:
            return out
        self.store.sync(ctx)
        x = args[0]
        p = x if self.c.probe == "modulated-input" else (out - x if out.shape == x.shape else out)
        prev = self.store.get(ctx.branch, "probe")
        acc_key = (self.key, "acc", ctx.branch)
        if prev is None or prev.shape != p.shape:
            compute, acc = True, 0.0
        else:
            acc = ctx.state.get(acc_key, 0.0) + rel_l1(p, prev)
            compute = acc >= self.c.threshold
        ctx.state[acc_key] = 0.0 if compute else acc
        ctx.state[(self.key, ctx.branch)] = (ctx.nfe, compute)
        self.store.put(ctx.branch, "probe", p)
        return out


def apply_adaptive_cache(model, config: AdaptiveCacheConfig | None = None) -> Handle:
    c = config or AdaptiveCacheConfig()
    if c.probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {c.probe!r}")
    net = getattr(model, "net", model)
    if all(hasattr(net, a) for a in ("input_blocks", "middle_block", "output_blocks")):
        if c.probe != "first-block":
            raise ValueError(f"probe {c.probe!r} needs a DiT; a UNet supports probe='first-block'")
        probe_mod = net.input_blocks[0]
        rest = [*net.input_blocks[1:], net.middle_block, *net.output_blocks]
    elif getattr(net, "blocks", None) is not None and len(net.blocks) >= 2:
        probe_mod = net.blocks[0] if c.probe == "first-block" else net.blocks[0].attn
        rest = list(net.blocks[1:])
    else:
        raise TypeError(f"adaptive caching needs a UNet or a transformer with >= 2 .blocks; got {type(net).__name__}")
    store, stats = CacheStore(), {}
    key = f"adaptive-{id(store)}"

    def policy(ctx, site):
        nfe, compute = ctx.state.get((key, ctx.branch), (None, True))
        return compute or nfe != ctx.nfe

    span = SpanCache("rest", store, policy, stats, "adaptive-cache")
    attached = [(probe_mod, add_hook(probe_mod, _Probe(c, store, key)))] + span.attach(rest)
    return Handle("adaptive-cache", attached, store, stats)

