"""The front door ``sample()``: validation, the loop context, NFE counting, callbacks and
per-sample seeded noise. Solvers (in ``solvers/``) are plain functions over a σ array.

The loop context is what hooks (caching, early exit) read instead of guessing the step from
timestep values: ``step`` (index of the solver step in progress), ``num_steps``, ``stage``
(which evaluation inside a multi-evaluation step: Heun's corrector is stage 1), ``branch``
("cond", or "cfg" while guidance evaluates both branches in one batch) and ``sigma``.
"""
from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .denoisers import as_batch_sigma

Tensor = torch.Tensor

_CTX: contextvars.ContextVar["LoopContext | None"] = contextvars.ContextVar("effdiff_loop", default=None)


@dataclass
class LoopContext:
    """State of the sampling loop in progress; read it with ``current_context()``."""
    num_steps: int | None
    step: int = 0
    stage: int = 0
    branch: str = "cond"
    sigma: Tensor | None = None
    nfe: int = 0
    skip_uncond: bool = False
    generation: int = 0
    state: dict = field(default_factory=dict)  # per-generation scratch space for hooks

    @contextmanager
    def branch_scope(self, branch: str):
        old, self.branch = self.branch, branch
        try:
            yield self
        finally:
            self.branch = old


_generation = [0]


def current_context() -> LoopContext | None:
    """The loop context of the ``sample()`` call in progress, or None outside one."""
    return _CTX.get()


@contextmanager
def loop_context(num_steps: int | None):
    """Open a fresh loop context (a new generation: caches keyed to it start empty)."""
    _generation[0] += 1
    ctx = LoopContext(num_steps=num_steps, generation=_generation[0])
    token = _CTX.set(ctx)
    try:
        yield ctx
    finally:
        _CTX.reset(token)


# ------------------------------------------------------------------------------------
# per-sample seeded noise
# ------------------------------------------------------------------------------------

class NoiseSampler:
    """Draws noise per sample from its own generator (seed_i), so a sample's trajectory does
    not depend on the batch it runs in. Without seeds, draws from torch's global RNG."""

    def __init__(self, seeds: Sequence[int] | None = None, device="cpu"):
        self.gens = None
        if seeds is not None:
            self.gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        self.device = device

    def __call__(self, like: Tensor) -> Tensor:
        if self.gens is None:
            return torch.randn_like(like)
        if len(self.gens) != like.shape[0]:
            raise ValueError(f"{len(self.gens)} seeds for a batch of {like.shape[0]}")
        z = torch.stack([torch.randn(like.shape[1:], generator=g, dtype=torch.float64) for g in self.gens])
        return z.to(device=like.device, dtype=like.dtype)


def seeds_for(seed: int, n: int) -> list[int]:
    """Per-sample seeds derived from one seed: sample i gets seed * 1_000_003 + i."""
    return [int(seed) * 1_000_003 + i for i in range(n)]


def randn(shape, seed: int | None = None, seeds: Sequence[int] | None = None, dtype=torch.float32, device="cpu") -> Tensor:
    """Initial noise of ``shape`` drawn per sample (same seed -> same sample at any batch size)."""
    if seeds is None:
        seeds = seeds_for(0 if seed is None else seed, shape[0])
    gen = [torch.Generator().manual_seed(int(s)) for s in seeds]
    # the first draw of each generator is the initial noise; solver noise comes from a
    # separate stream (seed offset) so changing the solver never changes x_T
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, dtype=torch.float64) for g in gen]).to(dtype=dtype, device=device)


# ------------------------------------------------------------------------------------
# the front door
# ------------------------------------------------------------------------------------

@dataclass
class SampleResult:
    x: Tensor
    nfe: int
    steps: int
    info: dict = field(default_factory=dict)


def check_sigmas(sigmas) -> Tensor:
    """A σ schedule as a 1-D float64 tensor: finite, non-negative, decreasing, ending in 0."""
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError(f"sigmas must be a 1-D array with at least 2 entries, got shape {tuple(sigmas.shape)}")
    if not torch.isfinite(sigmas).all():
        raise ValueError("sigmas contain NaN or inf")
    if sigmas[-1] != 0:
        raise ValueError(f"sigmas must end in exactly 0 (the clean sample), last entry is {float(sigmas[-1])!r}; "
                         "append 0, e.g. torch.cat([sigmas, sigmas.new_zeros(1)])")
    if (sigmas < 0).any():
        raise ValueError("sigmas must be non-negative")
    if not (sigmas[:-1] > sigmas[1:]).all():
        raise ValueError("sigmas must be strictly decreasing")
    return sigmas


class _Counted:
    """The denoiser as solvers see it: cond bound, σ broadcast, NFE counted, context kept."""

    def __init__(self, denoiser, cond, ctx: LoopContext, check: bool):
        self.denoiser, self.cond, self.ctx, self.check = denoiser, cond, ctx, check

    def __call__(self, x: Tensor, sigma) -> Tensor:
        ctx = self.ctx
        sigma = as_batch_sigma(sigma, x)
        ctx.sigma = sigma
        out = self.denoiser(x, sigma, self.cond) if self.cond is not None else self.denoiser(x, sigma)
        ctx.nfe += 1
        ctx.stage += 1
        if self.check and not torch.isfinite(out).all():
            raise FloatingPointError(f"the denoiser returned NaN/inf at step {ctx.step} (σ={float(sigma[0]):.4g})")
        return out.to(x.dtype)


def sample(denoiser: Callable, x: Tensor, sigmas, solver: str = "euler", cond=None, *,
           seed: int | None = None, seeds: Sequence[int] | None = None, callback: Callable | None = None,
           return_info: bool = False, progress: bool = False, check_finite: bool = True, **options):
    """Integrate from ``x`` (noise at ``sigmas[0]``) down the σ schedule with ``solver``.

    denoiser: any ``D(x, sigma, cond=None) -> x0``. cond: passed through (class labels...).
    seed / seeds: per-sample noise for stochastic solvers (same seed, same sample, at any
    batch size). callback(dict) is called after each step with x, i, sigma, denoised.
    options go to the solver (eta, s_churn, order...). Returns x, or a ``SampleResult``
    (x, nfe, steps) with ``return_info=True``.
    """
    from . import solvers as _solvers
    fn = _solvers.get(solver)
    sigmas = check_sigmas(sigmas).to(x.device)
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError("x must be a floating-point tensor")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    if seeds is None and seed is not None:
        seeds = seeds_for(seed + 7919, x.shape[0])  # a stream separate from the initial noise
    noise = NoiseSampler(seeds, device=x.device)

    with loop_context(len(sigmas) - 1) as ctx:
        den = _Counted(denoiser, cond, ctx, check_finite)
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(sigmas) - 1, desc=solver, leave=False)

        def step_done(info: dict):
            ctx.step, ctx.stage = int(info["i"]) + 1, 0
            if bar is not None:
                bar.update(1)
            if callback is not None:
                callback(info)

        with torch.no_grad():
            out = fn(den, x, sigmas, noise=noise, callback=step_done, **options)
        if bar is not None:
            bar.close()
        nfe, steps, state = ctx.nfe, ctx.step, dict(ctx.state)
    if return_info:
        return SampleResult(out, nfe, steps, state)
    return out
