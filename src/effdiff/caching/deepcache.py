"""DeepCache (Ma et al. 2024): reuse a UNet's high-level features across steps; on cached steps
only the shallow branch (input block ≤ b and its mirrored output blocks) is recomputed. Works on
effdiff's UNet and on diffusers' ``UNet2DConditionModel`` (down / mid / up blocks; a cached
down block returns its ``(hidden, res_samples)`` tuple as computed at the last full step)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .. import sites
from ..hooks import CacheStats, CacheStore, Handle, SiteCache, attach
from ..techniques import Technique, register
from .policies import StepSet, every, nonuniform_steps


@dataclass
class DeepCacheConfig:
    """interval: full steps every N (uniform); nonuniform: place ceil(steps / N) full steps (or
    ``full_fraction`` of the steps) by DeepCache's power law around ``center`` (a step index;
    negative counts from the end, -1 = the last step) instead; branch: the skip branch b kept
    live (0 = shallowest, most savings)."""
    interval: int = 3
    branch: int = 0
    nonuniform: bool = False
    center: int | None = None
    power: float = 1.4
    full_fraction: float | None = None


def _policy(c: DeepCacheConfig) -> StepSet:
    if c.interval < 1:
        raise ValueError(f"interval must be >= 1, got {c.interval}")
    if c.full_fraction is not None and not 0 < c.full_fraction <= 1:
        raise ValueError(f"full_fraction must be in (0, 1], got {c.full_fraction}")
    if not c.nonuniform:
        return every(c.interval)

    def full(n: int) -> int:
        return max(1, math.ceil(c.full_fraction * n)) if c.full_fraction else -(-n // c.interval)

    def center(n: int):
        return None if c.center is None else (c.center % n if c.center < 0 else min(c.center, n - 1))
    return StepSet(lambda n: nonuniform_steps(n, full(n), center(n), c.power))


def apply_deepcache(model, config: DeepCacheConfig | None = None) -> Handle:
    c = config or DeepCacheConfig()
    net = sites.unet(model, "DeepCache")
    n_in, n_out = len(net.input_blocks), len(net.output_blocks)
    if not 0 <= c.branch < min(n_in, n_out) - 1:
        raise ValueError(f"branch must be in [0, {min(n_in, n_out) - 2}] for this UNet, got {c.branch}")
    policy = _policy(c)
    stats = CacheStats()
    store = CacheStore(stats)
    # the deep part: input blocks after b, the middle block, output blocks before n_out - 1 - b
    deep = [net.input(i) for i in range(c.branch + 1, n_in)] + [net.middle()]
    deep += [net.output(i) for i in range(0, n_out - 1 - c.branch)]
    return attach("deepcache", [(m, SiteCache(site, store, policy, stats=stats)) for site, m in deep], store, stats)


def _check(model) -> str | None:
    u = sites.find_unet(model)
    if u is None:
        return "needs a UNet (input/middle/output blocks)"
    return None if min(len(u.input_blocks), len(u.output_blocks)) >= 2 else "the UNet has too few blocks"


register(Technique("deepcache", "caching", DeepCacheConfig, apply_deepcache, _check,
                   exact=lambda n: DeepCacheConfig(interval=1), eager=lambda n: DeepCacheConfig(interval=3),
                   paper="Ma et al. 2024, DeepCache"))
