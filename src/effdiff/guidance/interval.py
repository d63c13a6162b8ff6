"""Guidance interval (Kynkäänniemi et al. 2024, "Applying Guidance in a Limited Interval Improves
Sample and Distribution Quality in Diffusion Models"): classifier-free guidance only for σ in
[sigma_lo, sigma_hi]; outside it the conditional model alone (one evaluation per step)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..hooks import Handle
from ..techniques import Technique, register
from .pair import GuidanceStats, PairHook, apply_pair_hook, check_guidable


@dataclass
class IntervalConfig:
    """Guide where sigma_lo <= σ <= sigma_hi (the defaults: everywhere, i.e. ``ed.CFG``)."""
    sigma_lo: float = 0.0
    sigma_hi: float = math.inf

    def __post_init__(self):
        if not (self.sigma_lo <= self.sigma_hi) or math.isnan(self.sigma_lo):
            raise ValueError(f"need sigma_lo <= sigma_hi, got {self.sigma_lo}, {self.sigma_hi}")


class _Interval(PairHook):
    def __init__(self, c: IntervalConfig, stats: GuidanceStats):
        super().__init__(stats)
        self.c = c

    def need_uncond(self, ctx, x, sigma, state):
        return (sigma >= self.c.sigma_lo) & (sigma <= self.c.sigma_hi)


def apply_interval(denoiser, config: IntervalConfig | None = None) -> Handle:
    """Guide ``denoiser`` (the one ``ed.CFG`` wraps) only inside the σ interval."""
    return apply_pair_hook("guidance-interval", denoiser, _Interval(config or IntervalConfig(), GuidanceStats()))


register(Technique("guidance-interval", "guidance", IntervalConfig, apply_interval, check_guidable,
                   exact=lambda n: IntervalConfig(), eager=lambda n: IntervalConfig(math.inf, math.inf),
                   paper="Kynkäänniemi et al. 2024, guidance interval"))
