"""FORA (Selvaraju et al. 2024): fast-forward caching for DiTs — every N steps recompute, in
between reuse each block's attention and MLP outputs. The cache sits *before* the adaLN gate
(hooks on ``block.attn`` and ``block.mlp``), so reused features are re-gated with the current
step's conditioning."""
from __future__ import annotations

from dataclasses import dataclass

from ..hooks import CacheStore, Handle, SiteCache, add_hook
from .policies import every


@dataclass
class FORAConfig:
    interval: int = 3          # N: recompute every N steps
    attn: bool = True
    mlp: bool = True
    blocks: tuple[int, ...] | None = None   # which blocks (default all)


def dit_blocks(model):
    net = getattr(model, "net", model)
    blocks = getattr(net, "blocks", None) or getattr(net, "transformer_blocks", None)
    if blocks is None:
        raise TypeError(f"FORA needs a transformer with .blocks (or .transformer_blocks); got {type(net).__name__}")
    return blocks


def apply_fora(model, config: FORAConfig | None = None) -> Handle:
    c = config or FORAConfig()
    blocks = dit_blocks(model)
    idx = range(len(blocks)) if c.blocks is None else c.blocks
    policy, store, stats, attached = every(c.interval), CacheStore(), {}, []
    for i in idx:
        for part, on in (("attn", c.attn), ("mlp", c.mlp)):
            sub = getattr(blocks[i], part if hasattr(blocks[i], part) else {"attn": "attn1", "mlp": "ff"}[part], None)
            if on and sub is not None:
                attached.append((sub, add_hook(sub, SiteCache(f"blocks.{i}.{part}", store, policy, stats=stats,
                                                             name="fora"))))
    return Handle("fora", attached, store, stats)
