"""FORA (Selvaraju et al. 2024): fast-forward caching for DiTs — every N steps recompute, in
between reuse each block's attention and MLP outputs. The cache sits *before* the adaLN gate
(hooks on ``block.attn`` and ``block.mlp``; diffusers ``attn1`` / ``ff``), so reused features are
re-gated with the current step's conditioning."""
from __future__ import annotations

from dataclasses import dataclass

from .. import sites
from ..hooks import CacheStats, CacheStore, Handle, SiteCache, attach
from ..techniques import Technique, register
from .policies import every


@dataclass
class FORAConfig:
    """interval: N, recompute every N steps; attn / mlp: cache those sublayers; blocks: which
    transformer blocks (names or indices; default all)."""
    interval: int = 3
    attn: bool = True
    mlp: bool = True
    blocks: tuple[int | str, ...] | None = None


def apply_fora(model, config: FORAConfig | None = None) -> Handle:
    c = config or FORAConfig()
    sites.dit_blocks(model, "FORA")
    chosen = sites.select(model, c.blocks, who="FORA")
    policy, stats = every(c.interval), CacheStats()
    store = CacheStore(stats)
    hooks = []
    for name, block in chosen:
        for part in [p for p, on in (("attn", c.attn), ("mlp", c.mlp)) if on]:
            sub = sites.sublayer(block, part)
            if sub is not None:
                hooks.append((sub, SiteCache(f"{name}.{part}", store, policy, stats=stats)))
    return attach("fora", hooks, store, stats)


def _check(model) -> str | None:
    found = sites.find_dit_blocks(model)
    if found is None:
        return "needs a transformer with .blocks"
    return None if sites.sublayer(found[1][0], "attn") is not None else "its blocks have no attn / mlp sublayers"


register(Technique("fora", "caching", FORAConfig, apply_fora, _check,
                   exact=lambda n: FORAConfig(interval=1), eager=lambda n: FORAConfig(interval=2),
                   paper="Selvaraju et al. 2024, FORA"))
