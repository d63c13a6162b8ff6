"""TGATE (Zhang et al. 2024, "Cross-Attention Makes Inference Cumbersome in Text-to-Image
Diffusion Models"; survey §4.3): cross-attention output converges in the first, semantics-
planning steps and is redundant in the later, fidelity-improving steps. So:

- steps ``[0, m)`` (m = ``gate_step``) run the full model; at step ``m - 1`` each cross-attention
  module's output is cached — under classifier-free guidance the *average* of its conditional
  and unconditional halves (the paper's cache);
- from step ``m`` on, every cross-attention call returns that cache without computing, and the
  unconditional branch is dropped (``current_context().skip_uncond = True``, honoured by
  ``denoisers.CFG``), so each later evaluation runs batch B instead of 2B;
- self-attention keeps being computed; ``self_attn_interval = k`` optionally also caches it
  after the gate, recomputing at steps ``m, m + k, ...`` (TGATE's self-attention caching).

``gate_step >= num_steps`` leaves sampling bit-identical. Hooks sit on the modules named
``cross_attn`` (effdiff's DiT) or ``attn2`` (diffusers); self-attention on ``attn`` / ``attn1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import sites
from ..context import current_context
from ..hooks import CacheStats, CacheStore, Handle, ModelHook, SiteCache, attach
from ..techniques import Technique, register
from .policies import StepSet, window_steps

CROSS, SELF = ("cross_attn", "attn2"), ("attn", "attn1")


@dataclass
class TGATEConfig:
    """gate_step: m, the first step that reuses the cached cross-attention (steps before it run
    in full); self_attn_interval: k, also cache self-attention after the gate, recomputing it
    every k steps (None: always compute)."""
    gate_step: int = 10
    self_attn_interval: int | None = None


class _SkipUncond(ModelHook):
    """On the outer denoiser: from the gate step on, drop CFG's unconditional branch."""

    def __init__(self, gate_step: int):
        self.gate_step = gate_step

    def __call__(self, module, call_next, *args, **kwargs):
        ctx = current_context()
        if ctx is not None and ctx.num_steps is not None and ctx.step >= self.gate_step:
            ctx.skip_uncond = True
        return call_next(*args, **kwargs)


class _GateCache(ModelHook):
    """On a cross-attention module: compute before the gate (caching step m-1's output, CFG halves
    averaged), return the cache after it."""

    def __init__(self, site: str, store: CacheStore, gate_step: int, stats: CacheStats):
        self.site, self.store, self.gate_step, self.stats = site, store, gate_step, stats

    def __call__(self, module, call_next, *args, **kwargs):
        ctx = current_context()
        if ctx is None or ctx.num_steps is None:
            return call_next(*args, **kwargs)
        cached = self.store.get(ctx, "gate", self.site)
        if ctx.step >= self.gate_step and cached is not None:
            B = args[0].shape[0]
            if B == 2 * cached.shape[0]:     # guidance wrapped outside the hooked model: serve both halves
                ctx.skip_uncond = True       # (and run batch B from the next evaluation on)
                cached = torch.cat([cached, cached])
            if cached.shape[0] == B:
                self.stats.add(reused=1)
                return cached
        out = call_next(*args, **kwargs)
        self.stats.add(computed=1)
        if ctx.step >= self.gate_step - 1:   # the last full step (its last stage wins)
            self.store.put(ctx, "gate", self.site, out.chunk(2)[0] / 2 + out.chunk(2)[1] / 2 if ctx.branch == "cfg" else out)
        return out


def apply_tgate(model: nn.Module, config: TGATEConfig | None = None) -> Handle:
    """Attach TGATE to ``model`` (a CFG-guided denoiser, a denoiser, or a network with
    cross-attention). Apply it to the guided denoiser (``guided(den, w)``) so the batch halves
    from the gate step's first evaluation; on an inner model it halves one evaluation later."""
    c = config or TGATEConfig()
    if c.gate_step < 1:
        raise ValueError(f"gate_step must be >= 1 (step 0 has to compute the cross-attention), got {c.gate_step}")
    if c.self_attn_interval is not None and c.self_attn_interval < 1:
        raise ValueError(f"self_attn_interval must be >= 1 or None, got {c.self_attn_interval}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"TGATE hooks an nn.Module (a denoiser or network); got {type(model).__name__}")
    cross = sites.named(model, CROSS)
    if not cross:
        raise TypeError(f"TGATE needs cross-attention modules (named {' or '.join(CROSS)}); "
                        f"{type(model).__name__} has none")
    stats = CacheStats()
    store = CacheStore(stats)
    hooks = [(model, _SkipUncond(c.gate_step))]
    hooks += [(m, _GateCache(site, store, c.gate_step, stats)) for site, m in cross]
    if c.self_attn_interval is not None:
        m_, k = c.gate_step, c.self_attn_interval
        policy = StepSet(lambda n: window_steps(n, k, m_, n))
        hooks += [(m, SiteCache(site, store, policy, stats=stats)) for site, m in sites.named(model, SELF)]
    return attach("tgate", hooks, store, stats)


def _check(model) -> str | None:
    if isinstance(model, nn.Module) and sites.named(model, CROSS):
        return None
    return f"needs cross-attention modules (named {' or '.join(CROSS)})"


register(Technique("tgate", "caching", TGATEConfig, apply_tgate, _check,
                   exact=lambda n: TGATEConfig(gate_step=n), eager=lambda n: TGATEConfig(max(1, n // 2), 2),
                   paper="Zhang et al. 2024, TGATE"))
