"""CFG cache (Lv et al. 2024, "FasterCache: Training-Free Video Diffusion Model Acceleration with High
Quality", its CFG-Cache): the conditional-unconditional difference changes slowly over steps, so it is
computed in full on refresh steps and reused in between, where only the conditional branch runs:
D_u ≈ D_c + σ Δε with Δε = ε_c - ε_u cached in noise space (scale-free across σ). Plain reuse only:
FasterCache's low/high-frequency reweighting of the cached difference is not implemented."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..denoisers import _bc
from ..hooks import Handle
from ..techniques import Technique, register
from .pair import GuidanceStats, PairHook, apply_pair_hook, check_guidable, eps_of


@dataclass
class CFGCacheConfig:
    """interval: N, the unconditional branch runs on steps first_steps, first_steps + N, ... (N = 1:
    every step, i.e. ``ed.CFG``); first_steps: the leading steps that always run it (FasterCache keeps
    the first steps full); last_steps: trailing steps that always run it."""
    interval: int = 2
    first_steps: int = 2
    last_steps: int = 0

    def __post_init__(self):
        if self.interval < 1 or self.first_steps < 0 or self.last_steps < 0:
            raise ValueError(f"need interval >= 1 and first/last_steps >= 0, got {self}")


class _CFGCache(PairHook):
    def __init__(self, c: CFGCacheConfig, stats: GuidanceStats):
        super().__init__(stats)
        self.c = c

    def _refresh(self, ctx) -> bool:
        c, i, n = self.c, ctx.step, ctx.num_steps
        if c.interval == 1 or i < c.first_steps or (n is not None and i >= n - c.last_steps):
            return True
        return (i - c.first_steps) % c.interval == 0

    def need_uncond(self, ctx, x, sigma, state):
        have = state.get("delta") is not None and state["delta"].shape[0] == x.shape[0]
        run = self._refresh(ctx) or not have
        return torch.full((x.shape[0],), run, dtype=torch.bool, device=x.device)

    def observe(self, ctx, x, sigma, d_c, d_u, state, idx):
        if self.c.interval > 1:
            state["delta"] = eps_of(x, d_c, sigma) - eps_of(x, d_u, sigma)

    def substitute(self, ctx, x, sigma, d_c, state, idx):
        return d_c + _bc(sigma, x) * state["delta"][idx]


def apply_cfg_cache(denoiser, config: CFGCacheConfig | None = None) -> Handle:
    """FasterCache's CFG cache on ``denoiser`` (the one ``ed.CFG`` wraps)."""
    return apply_pair_hook("cfg-cache", denoiser, _CFGCache(config or CFGCacheConfig(), GuidanceStats()))


register(Technique("cfg-cache", "guidance", CFGCacheConfig, apply_cfg_cache, check_guidable,
                   exact=lambda n: CFGCacheConfig(interval=1), eager=lambda n: CFGCacheConfig(interval=n + 1, first_steps=1),
                   paper="Lv et al. 2024, FasterCache (CFG-Cache)"))
