"""CFG cache (Lv et al. 2024, "FasterCache: Training-Free Video Diffusion Model Acceleration with High
Quality", its CFG-Cache): the conditional-unconditional difference changes slowly over steps, so it is
computed in full on refresh steps and reused in between, where only the conditional branch runs:
D_u ≈ D_c + σ Δε with Δε = ε_c - ε_u cached in noise space (scale-free across σ). With ``boost`` > 0 the
reused Δε is split into a low-frequency part (a centred disc of the 2-D spectrum over the last two dims) and
the rest, and, as FasterCache does, the low band is amplified by 1 + boost in the early steps and the high band
in the late ones (``switch``: the fraction of the steps where it changes). boost = 0 is plain reuse. The disc
radius (1/5 of the smaller side) follows a public implementation; the boost and switch values are not the
paper's (they are settings, untuned here)."""
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
    boost: float = 0.0             # frequency reweighting of the reused difference (0: plain reuse)
    switch: float = 0.5            # before this fraction of the steps the low band is boosted, after it the high
    radius: float = 0.2            # the low band: spectrum within radius * min(H, W) of the centre

    def __post_init__(self):
        if self.interval < 1 or self.first_steps < 0 or self.last_steps < 0:
            raise ValueError(f"need interval >= 1 and first/last_steps >= 0, got {self}")
        if self.boost < 0 or not 0 <= self.switch <= 1 or self.radius < 0:
            raise ValueError(f"need boost >= 0, 0 <= switch <= 1 and radius >= 0, got {self}")


def freq_split(delta: torch.Tensor, radius: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) parts of ``delta`` over its last two dims, low + high == delta: the shifted 2-D spectrum
    within radius * min(H, W) of its centre is the low band (FasterCache's split of the CFG difference)."""
    h, w = delta.shape[-2:]
    spec = torch.fft.fftshift(torch.fft.fft2(delta.double()), dim=(-2, -1))
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    r = int(radius * min(h, w))
    disc = ((yy - h // 2) ** 2 + (xx - w // 2) ** 2 <= r * r).to(delta.device)
    low = torch.fft.ifft2(torch.fft.ifftshift(spec * disc, dim=(-2, -1))).real
    return low.to(delta.dtype), (delta.double() - low).to(delta.dtype)


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
        delta = state["delta"][idx]
        if self.c.boost > 0:
            low, high = freq_split(delta, self.c.radius)
            early = ctx.num_steps is None or ctx.step < self.c.switch * ctx.num_steps
            a = 1.0 + self.c.boost
            delta = a * low + high if early else low + a * high
        return d_c + _bc(sigma, x) * delta


def apply_cfg_cache(denoiser, config: CFGCacheConfig | None = None) -> Handle:
    """FasterCache's CFG cache on ``denoiser`` (the one ``ed.CFG`` wraps)."""
    return apply_pair_hook("cfg-cache", denoiser, _CFGCache(config or CFGCacheConfig(), GuidanceStats()))


register(Technique("cfg-cache", "guidance", CFGCacheConfig, apply_cfg_cache, check_guidable,
                   exact=lambda n: CFGCacheConfig(interval=1), eager=lambda n: CFGCacheConfig(interval=n + 1, first_steps=1),
                   paper="Lv et al. 2024, FasterCache (CFG-Cache)"))
