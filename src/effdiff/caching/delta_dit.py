"""Δ-DiT (Chen et al. 2024): stage-adaptive Δ-Cache for diffusion transformers.

Reading of the paper (and survey §4.3, "step-sensitive block caching ... reuses intermediate
residual features"): a DiT's front blocks shape the outline, its rear blocks the details.
Δ-Cache stores the deviation ``Δ = out(block k+m-1) - in(block k)`` of a span of ``m`` blocks
and, on a cached step, skips the span and adds Δ to the span's *current* input (so the new
step's input still flows through). In the early, outline-forming stage (steps < b, high noise)
the rear ``m`` blocks are cached, so the front blocks keep computing the outline; from step b
on the front ``m`` blocks are cached and the rear blocks keep computing details. Inside each
stage the cached span is recomputed every ``interval`` steps, counting from the stage start.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import sites
from ..hooks import CacheStats, CacheStore, Handle, SpanCache, attach
from ..techniques import Technique, register
from .policies import StepSet, window_steps


@dataclass
class DeltaDiTConfig:
    """interval: N, recompute the cached span every N steps; num_blocks: m, blocks per span;
    boundary_step: b, the first step of the late stage (default: half the steps)."""
    interval: int = 2
    num_blocks: int = 2
    boundary_step: int | None = None


def apply_delta_dit(model, config: DeltaDiTConfig | None = None) -> Handle:
    c = config or DeltaDiTConfig()
    blocks = sites.dit_blocks(model, "Δ-DiT")
    D, m = len(blocks), c.num_blocks
    if not 1 <= m <= D // 2:
        raise ValueError(f"num_blocks must be in [1, {D // 2}] for a DiT of depth {D} (front and rear spans "
                         f"must not overlap), got {m}")
    if c.interval < 1:
        raise ValueError(f"interval must be >= 1, got {c.interval}")

    def b(n: int) -> int:
        return n // 2 if c.boundary_step is None else c.boundary_step

    stats = CacheStats()
    store = CacheStore(stats)
    rear = SpanCache(f"blocks.{D - m}-{D - 1}", store, StepSet(lambda n: window_steps(n, c.interval, 0, b(n))),
                     stats)
    front = SpanCache(f"blocks.0-{m - 1}", store, StepSet(lambda n: window_steps(n, c.interval, b(n), n)),
                      stats)
    return attach("delta-dit", front.hooks(blocks[:m]) + rear.hooks(blocks[D - m:]), store, stats)


def _check(model) -> str | None:
    found = sites.find_dit_blocks(model)
    return None if found is not None and len(found[1]) >= 2 else "needs a transformer with >= 2 blocks"


register(Technique("delta-dit", "caching", DeltaDiTConfig, apply_delta_dit, _check,
                   exact=lambda n: DeltaDiTConfig(interval=1, num_blocks=1),
                   eager=lambda n: DeltaDiTConfig(interval=2, num_blocks=1),
                   paper="Chen et al. 2024, Δ-DiT"))
