"""The shared mechanism of the training-free guidance techniques: a hook on the denoiser that
``ed.CFG`` guides, seeing its one batched call ``[x; x]`` with ``[cond; null]`` (loop context branch
"cfg"). A technique's policy decides, per step, which samples still need their unconditional half:

- all of them: the call runs unchanged (so a technique at its "exact" setting is ``ed.CFG`` bit for bit);
- none: only the conditional half runs (branch "cond", batch B) and the unconditional output is
  ``substitute``d: the conditional output itself (CFG then returns exactly ``D_c``: ``D_c + w·0``) or,
  for the CFG cache, ``D_c`` shifted by a cached difference;
- some (per-sample policies): one call of batch B + k (branch "cfg-partial").

Decisions are per sample, so a sample's trajectory does not depend on the batch it runs in. Every
network row is counted in ``GuidanceStats`` (a step with one evaluation counts one, a guided step two).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..context import LoopContext, current_context
from ..denoisers import _bc, as_batch_sigma, map_cond
from ..hooks import Handle, ModelHook, Stats, attach

Tensor = torch.Tensor


@dataclass
class GuidanceStats(Stats):
    """Network rows evaluated under guidance: ``cond_rows`` (conditional halves) and ``uncond_rows``
    (unconditional halves actually run); ``skipped_rows`` (unconditional halves not run).
    ``uncond_fraction``: the share of CFG's unconditional evaluations that ran."""
    cond_rows: int = 0
    uncond_rows: int = 0
    skipped_rows: int = 0
    derived = ("uncond_fraction", "evaluation_saving")

    @property
    def uncond_fraction(self) -> float:
        total = self.uncond_rows + self.skipped_rows
        return self.uncond_rows / total if total else 1.0

    @property
    def evaluation_saving(self) -> float:
        """Fraction of CFG's network evaluations saved (CFG runs 2 rows per sample per call)."""
        total = 2 * self.cond_rows
        return self.skipped_rows / total if total else 0.0


def take(cond, idx):
    """Rows ``idx`` of a condition (a tensor or a dict of them; non-tensor leaves unchanged)."""
    return map_cond(lambda c: c[idx] if torch.is_tensor(c) and c.ndim > 0 else c, cond)


def cat(a, b):
    return map_cond(lambda u, v: torch.cat([u, v]) if torch.is_tensor(u) and u.ndim > 0 else u, a, b)


def eps_of(x: Tensor, d: Tensor, sigma: Tensor) -> Tensor:
    """The noise prediction of a denoiser output: ε = (x - D) / σ."""
    return (x - d) / _bc(sigma, x)


class PairHook(ModelHook):
    """Base hook: subclasses implement ``need_uncond(ctx, x, sigma, state) -> bool [B]`` (which samples
    run their unconditional half this call), and may override ``substitute`` and ``observe``."""

    def __init__(self, stats: GuidanceStats):
        self.stats = stats

    # -- policy (subclasses) -----------------------------------------------------------------
    def need_uncond(self, ctx: LoopContext, x: Tensor, sigma: Tensor, state: dict) -> Tensor:
        return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)

    def substitute(self, ctx, x, sigma, d_c, state, idx) -> Tensor:
        """The unconditional output of the samples ``idx`` whose unconditional half did not run."""
        return d_c

    def observe(self, ctx, x, sigma, d_c, d_u, state, idx) -> None:
        """Called with the samples ``idx`` whose both halves ran (their outputs ``d_c``, ``d_u``)."""

    # -- mechanism ---------------------------------------------------------------------------
    def __call__(self, module: nn.Module, call_next, x, sigma, cond=None, *args, **kwargs):
        ctx = current_context()
        if ctx is None or ctx.branch != "cfg" or cond is None or args or kwargs or x.shape[0] % 2:
            return call_next(x, sigma, cond, *args, **kwargs)
        B = x.shape[0] // 2
        sigma = as_batch_sigma(sigma, x)
        xc, sc, cc = x[:B], sigma[:B], take(cond, slice(0, B))
        state = ctx.state.setdefault(("guidance", id(self)), {})
        need = self.need_uncond(ctx, xc, sc, state)
        k = int(need.sum())
        if k == B:                                    # CFG unchanged
            out = call_next(x, sigma, cond)
            self.stats.add(cond_rows=B, uncond_rows=B)
            self.observe(ctx, xc, sc, out[:B], out[B:], state, torch.arange(B, device=x.device))
            return out
        run = need.nonzero().flatten()
        nulls = take(cond, slice(B, 2 * B))
        if k == 0:
            with ctx.branch_scope("cond"):
                d_c = call_next(xc, sc, cc)
            d_u = None
        else:
            with ctx.branch_scope("cfg-partial"):      # B + k rows: not a [cond; null] pair for other hooks
                both = call_next(torch.cat([xc, xc[run]]), torch.cat([sc, sc[run]]), cat(cc, take(nulls, run)))
            d_c, d_u = both[:B], both[B:]
        self.stats.add(cond_rows=B, uncond_rows=k, skipped_rows=B - k)
        out_u = torch.empty_like(d_c)
        skip = (~need).nonzero().flatten()
        out_u[skip] = self.substitute(ctx, xc[skip], sc[skip], d_c[skip], state, skip)
        if k:
            out_u[run] = d_u
            self.observe(ctx, xc[run], sc[run], d_c[run], d_u, state, run)
        return torch.cat([d_c, out_u])


def apply_pair_hook(name: str, denoiser, hook: PairHook) -> Handle:
    """Attach ``hook`` to the denoiser that ``ed.CFG`` guides (``denoiser`` itself, or the one inside
    an ``ed.CFG`` passed here)."""
    from ..denoisers import CFG
    target = denoiser.denoiser if isinstance(denoiser, CFG) else denoiser
    if not isinstance(target, nn.Module):
        raise TypeError(f"{name} hooks an nn.Module denoiser; got {type(target).__name__}")
    return attach(name, [(target, hook)], None, hook.stats)


def check_guidable(denoiser) -> str | None:
    """Why guidance techniques do not apply (None when they do): they need a class-conditional
    denoiser with a null class (or an ``ed.CFG`` around one)."""
    from ..denoisers import CFG
    target = denoiser.denoiser if isinstance(denoiser, CFG) else denoiser
    if not isinstance(target, nn.Module):
        return "needs an nn.Module denoiser"
    if getattr(target, "null_class", None) is None:
        return "needs a class-conditional denoiser with a null class (classifier-free guidance)"
    return None

