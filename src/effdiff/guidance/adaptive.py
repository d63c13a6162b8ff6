"""Adaptive guidance (Castillo et al. 2023, "Adaptive Guidance: Training-free Acceleration of
Conditional Diffusion Models"): once the conditional and unconditional noise predictions of a sample
agree (cosine similarity above ``threshold``), guidance has converged: from then on that sample runs
the conditional model alone. The decision is per sample and sticky for the rest of the generation.

The paper compares noise predictions ε. In σ-form at high noise both ε ≈ x/σ, so cos(ε_c, ε_u) ≈ 1 at
the first step whatever the guidance does (measured on digits-dit: > 0.9999 for σ > 30, falling to
0.95 at the end); the x0 predictions show the convergence the paper describes (0.88 at the start, rising
to 1). ``space="x0"`` (the default here) compares them; ``space="eps"`` is the paper's literal choice."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..hooks import Handle
from ..techniques import Technique, register
from .pair import GuidanceStats, PairHook, apply_pair_hook, check_guidable, eps_of


@dataclass
class AdaptiveGuidanceConfig:
    """threshold: γ̄, stop guiding a sample once cos(ε_c, ε_u) > γ̄ (> 1: never stop, i.e. ``ed.CFG``);
    min_steps: guide at least the first this many steps; space: "x0" or "eps", the predictions compared."""
    threshold: float = 0.99
    min_steps: int = 0
    space: str = "x0"

    def __post_init__(self):
        if self.space not in ("x0", "eps"):
            raise ValueError(f"space must be 'x0' or 'eps', got {self.space!r}")


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
        if self.c.space == "eps":
            d_c, d_u = eps_of(x, d_c, sigma), eps_of(x, d_u, sigma)
        e_c, e_u = d_c.flatten(1), d_u.flatten(1)
        cos = torch.nn.functional.cosine_similarity(e_c.double(), e_u.double(), dim=1)
        if ctx.step >= self.c.min_steps - 1:
            done[idx] |= cos > self.c.threshold


def apply_adaptive(denoiser, config: AdaptiveGuidanceConfig | None = None) -> Handle:
    """Adaptive guidance on ``denoiser`` (the one ``ed.CFG`` wraps)."""
    return apply_pair_hook("guidance-adaptive", denoiser, _Adaptive(config or AdaptiveGuidanceConfig(), GuidanceStats()))


register(Technique("guidance-adaptive", "guidance", AdaptiveGuidanceConfig, apply_adaptive, check_guidable,
                   exact=lambda n: AdaptiveGuidanceConfig(threshold=2.0), eager=lambda n: AdaptiveGuidanceConfig(-2.0),
                   paper="Castillo et al. 2023, Adaptive Guidance"))
