"""Adaptive guidance (Castillo et al. 2023, "Adaptive Guidance: Training-free Acceleration of
Conditional Diffusion Models"): once the conditional and unconditional noise predictions of a sample
agree (cosine similarity above ``threshold``), guidance has converged: from then on that sample runs
the conditional model alone. The decision is per sample and sticky for the rest of the generation."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..hooks import Handle
from ..techniques import Technique
from .pair import GuidanceStats, PairHook, apply_pair_hook, check_guidable, register_guidance, eps_of


@dataclass
class AdaptiveGuidanceConfig:
    """threshold: γ̄, stop guiding a sample once cos(ε_c, ε_u) > γ̄ (> 1: never stop, i.e. ``ed.CFG``);
    min_steps: guide at least the first this many steps."""
    threshold: float = 0.99
    min_steps: int = 0


class _Adaptive(PairHook):
    def __init__(self, c: AdaptiveGuidanceConfig, stats: GuidanceStats):
        super().__init__(stats)
        self.c = c

    def need_uncond(self, ctx, x, sigma, state):
        done = state.get("done")
        if done is None or done.shape[0] != x.shape[0] or ctx.step < self.c.min_steps:
            return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        return ~done

    def observe(self, ctx, x, sigma, d_c, d_u, state, idx):
        if self.c.threshold > 1:
            return
        done = state.get("done")
        if done is None or done.shape[0] < int(idx.max()) + 1:
            done = state["done"] = torch.zeros(max(int(idx.max()) + 1, x.shape[0]), dtype=torch.bool, device=x.device)
        e_c, e_u = eps_of(x, d_c, sigma).flatten(1), eps_of(x, d_u, sigma).flatten(1)
        cos = torch.nn.functional.cosine_similarity(e_c.double(), e_u.double(), dim=1)
        if ctx.step >= self.c.min_steps - 1:
            done[idx] |= cos > self.c.threshold


def apply_adaptive(denoiser, config: AdaptiveGuidanceConfig | None = None) -> Handle:
    """Adaptive guidance on ``denoiser`` (the one ``ed.CFG`` wraps)."""
    return apply_pair_hook("adaptive-guidance", denoiser, _Adaptive(config or AdaptiveGuidanceConfig(), GuidanceStats()))


register_guidance(Technique("adaptive-guidance", "guidance", AdaptiveGuidanceConfig, apply_adaptive, check_guidable,
                   exact=lambda n: AdaptiveGuidanceConfig(threshold=2.0), eager=lambda n: AdaptiveGuidanceConfig(-2.0),
                   paper="Castillo et al. 2023, Adaptive Guidance"))
