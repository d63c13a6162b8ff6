"""DeepCache (Ma et al. 2024): reuse a UNet's high-level features across steps; on cached steps
only the shallow branch (input block ≤ b and its mirrored output blocks) is recomputed."""
from __future__ import annotations

import math

from dataclasses import dataclass

from ..hooks import CacheStore, Handle, SiteCache, add_hook
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


def unet_of(model):
    """The UNet inside a denoiser wrapper (``.net``) or the model itself; must expose
    ``input_blocks`` / ``middle_block`` / ``output_blocks`` (our UNet, ADM-style UNets)."""
    net = getattr(model, "net", model)
    for attr in ("input_blocks", "middle_block", "output_blocks"):
        if not hasattr(net, attr):
            raise TypeError(f"DeepCache needs a UNet with input_blocks/middle_block/output_blocks; "
                            f"{type(net).__name__} has no {attr!r}")
    return net


def _foreign(model):
    """The integration's ``apply_deepcache`` when ``model`` wraps a foreign (diffusers) UNet."""
    net = getattr(model, "net", model)
    if type(net).__module__.split(".")[0] == "diffusers":
        from ..integrations.diffusers import apply_deepcache
        return apply_deepcache
    return None


def apply_deepcache(model, config: DeepCacheConfig | None = None) -> Handle:
    if (foreign := _foreign(model)) is not None:
        return foreign(model, config)
    c = config or DeepCacheConfig()
    net = unet_of(model)
    n_in, n_out = len(net.input_blocks), len(net.output_blocks)
    if not 0 <= c.branch < min(n_in, n_out) - 1:
        raise ValueError(f"branch must be in [0, {min(n_in, n_out) - 2}] for this UNet, got {c.branch}")
    if c.full_fraction is not None and not 0 < c.full_fraction <= 1:
        raise ValueError(f"full_fraction must be in (0, 1], got {c.full_fraction}")
    if c.nonuniform:
        def full(n: int) -> int:
            return max(1, math.ceil(c.full_fraction * n)) if c.full_fraction else -(-n // c.interval)

        def center(n: int):
            return None if c.center is None else (c.center % n if c.center < 0 else min(c.center, n - 1))
        policy = StepSet(lambda n: nonuniform_steps(n, full(n), center(n), c.power))
    else:
        policy = every(c.interval)
    store, stats = CacheStore(), {}
    # the deep part: input blocks after b, the middle block, output blocks before n_out - 1 - b
    sites = [(f"input_blocks.{i}", net.input_blocks[i]) for i in range(c.branch + 1, n_in)]
    sites.append(("middle_block", net.middle_block))
    sites += [(f"output_blocks.{i}", net.output_blocks[i]) for i in range(0, n_out - 1 - c.branch)]
    attached = []
    for site, module in sites:
        attached.append((module, add_hook(module, SiteCache(site, store, policy, stats=stats, name="deepcache"))))
    return Handle("deepcache", attached, store, stats)
