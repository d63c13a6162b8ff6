"""The sampling driver: ``sample()``, the one loop every fixed-grid solver runs in.

The driver owns the step index (true indices, also when only a segment ``start..stop`` of a
schedule runs), the stage within a step, NFE counting, the final step to σ = 0, callbacks,
shape / dtype / finite checks of every denoiser output, and per-sample seeded noise. Solvers
(``solvers/``) are step functions registered here (``register``, ``Step``, ``Solver``); the few
that own their loop get a ``Loop``. Several
segments can run in one generation (``Session``): that is how Restart, ReDi, retrieval-guided
initialization and NIRVANA compose, and hooks always see the true step.

The loop context itself is in ``effdiff.context`` (the ground floor).
"""
from __future__ import annotations

import inspect
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .context import LoopContext, current_context, loop_context
from .denoisers import as_batch_sigma, cond_leaves, map_cond
from .errors import UnknownName
from .timesteps import check_sigmas  # noqa: F401  (public here too)

Tensor = torch.Tensor

__all__ = ["sample", "Session", "Loop", "SampleResult", "Step", "Solver", "register", "get", "names", "randn", "seeds_for", "NoiseSampler",
           "check_sigmas", "current_context", "loop_context", "LoopContext"]


# ------------------------------------------------------------------------------------
# the solver registry: step functions and loop-form solvers (their code is in solvers/)
# ------------------------------------------------------------------------------------

_REGISTRY: dict[str, "Solver"] = {}


@dataclass
class Step:
    """What a step function sees of the loop: step ``i`` of ``n`` from ``sigma`` to ``sigma_next``."""
    i: int
    n: int
    sigma: float
    sigma_next: float
    sigmas: Tensor                  # the whole schedule, float64, ending in 0
    noise: Callable | None = None   # noise(like) -> per-sample Gaussian noise
    sigma_hat: float | None = None  # set by solvers that raise σ before evaluating (EDM churn)


def _keyword_options(fn) -> set[str] | None:
    """The keyword-only options of a solver function (None when it takes **kwargs)."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY}


@dataclass(frozen=True)
class Solver:
    """A registered solver: ``fn`` (a step function, or a loop function when ``loop``), preset
    ``defaults``, and ``final``: "denoised" (the driver returns D on the step to σ=0) or "step".
    Calling it runs it on its own through ``sample`` with its defaults."""
    name: str
    fn: Callable
    defaults: dict
    loop: bool = False
    final: str = "denoised"

    @property
    def __doc__(self):  # the function's docstring, for help() and `effdiff solvers`
        return self.fn.__doc__

    def options(self, opts: dict) -> dict:
        """The defaults updated by ``opts``; an option the solver does not take is a TypeError."""
        known = _keyword_options(self.fn)
        if known is not None:
            unknown = sorted(set(opts) - known)
            if unknown:
                raise TypeError(f"solver {self.name!r} has no option {unknown[0]!r}; "
                                f"its options: {', '.join(sorted(known)) or 'none'}")
        return {**self.defaults, **opts}

    def __call__(self, denoiser, x, sigmas, **kwargs):
        """``sample(denoiser, x, sigmas, solver=self, **kwargs)`` (cond, seed, noise, callback,
        start, stop and the solver's options)."""
        return sample(denoiser, x, sigmas, solver=self, **kwargs)


def register(name: str, *, loop: bool = False, final: str = "denoised", **defaults):
    """Register ``fn`` under ``name`` (lower-case, dashes); ``defaults`` pre-set options, so one
    function can serve several names (``ddpm`` is ``ddim`` with eta=1)."""
    if name != name.lower() or " " in name or "_" in name:
        raise ValueError(f"solver names are lower-case with dashes, got {name!r}")
    if final not in ("denoised", "step"):
        raise ValueError(f"final must be 'denoised' or 'step', got {final!r}")

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"solver {name!r} is registered twice")
        _REGISTRY[name] = Solver(name, fn, dict(defaults), loop, final)
        return fn
    return deco


def get(name) -> Solver:
    """The solver registered as ``name`` (a ``Solver`` passes through; clear error for unknown names)."""
    if isinstance(name, Solver):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownName(f"unknown solver {name!r}; known solvers: {', '.join(names())}") from None


def names() -> list[str]:
    """Every registered solver name, sorted."""
    return sorted(_REGISTRY)


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


def check_seed(seed) -> int:
    """A seed as a non-negative Python int (clear error otherwise)."""
    if isinstance(seed, bool) or not isinstance(seed, int) and not (torch.is_tensor(seed) and seed.numel() == 1
                                                                  and not seed.is_floating_point()):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if not 0 <= int(seed) < 2 ** 63:
        raise ValueError(f"seed must be in [0, 2**63), got {int(seed)}")
    return int(seed)


def seeds_for(seed: int, n: int) -> list[int]:
    """Per-sample seeds derived from one seed: sample i gets seed * 1_000_003 + i (mod 2**64, the
    generator's range)."""
    seed = check_seed(seed)
    return [(seed * 1_000_003 + i) % 2 ** 64 for i in range(n)]


NOISE_STREAM = 7919   # seed offset of the solver-noise stream, so changing the solver never changes x_T


def solver_noise(seed: int | None, n: int, device="cpu") -> "NoiseSampler":
    """The per-sample noise stream of stochastic solvers for ``seed`` (global RNG when None)."""
    return NoiseSampler(seeds_for(check_seed(seed) % (2 ** 63 - NOISE_STREAM) + NOISE_STREAM, n) if seed is not None else None, device=device)


def randn(shape, seed: int | None = None, seeds: Sequence[int] | None = None, dtype=torch.float32, device="cpu") -> Tensor:
    """Initial noise of ``shape`` drawn per sample (same seed -> same sample at any batch size)."""
    if seeds is None:
        seeds = seeds_for(0 if seed is None else seed, shape[0])
    gen = [torch.Generator().manual_seed(int(s)) for s in seeds]
    # the first draw of each generator is the initial noise; solver noise comes from a
    # separate stream (seed offset) so changing the solver never changes x_T
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, dtype=torch.float64) for g in gen]).to(dtype=dtype, device=device)


def initial(den, n: int, sigmas, seed: int = 0, cond=None) -> Tensor:
    """The start of a run for a zoo-style denoiser: per-sample noise (``randn``, so the same seed
    gives the same samples at any batch size) in the model's shape (``den.meta["model"]``) times
    σ_max = ``sigmas[0]``, moved onto the denoiser's own prior when it has one (``den.prior``:
    PriorGrad's class-conditional N(μ_c, diag s_c²), which needs ``cond``)."""
    m = den.meta["model"]
    x = randn((n, m.get("in_channels", 1), m["image_size"], m["image_size"]), seed=seed) * torch.as_tensor(sigmas)[0].float()
    return from_prior(den, x, cond)


def from_prior(den, x_T: Tensor, cond=None) -> Tensor:
    """A standard start ``randn * σ_max`` moved onto the denoiser's own prior when it has one
    (``den.prior``, e.g. PriorGrad's μ_c + s_c x_T); unchanged otherwise."""
    prior = getattr(den, "prior", None)
    return x_T if prior is None else prior(x_T, cond)


# ------------------------------------------------------------------------------------
# the front door
# ------------------------------------------------------------------------------------

@dataclass
class SampleResult:
    """x: the samples; nfe: denoiser calls; steps: solver steps run; stats: the solver's counters
    (adaptive and parallel solvers publish theirs here)."""
    x: Tensor
    nfe: int
    steps: int
    stats: dict = field(default_factory=dict)

    @property
    def info(self) -> dict:  # the earlier name of ``stats``
        return self.stats


def check_x(x) -> Tensor:
    """x as solvers need it: a finite floating-point tensor with a non-empty batch."""
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__}"
                        + (f" of {x.dtype}" if torch.is_tensor(x) else ""))
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"x must have a non-empty batch dimension, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    return x


class BoundDenoiser:
    """The denoiser as solvers see it: ``D(x, sigma)`` with the condition bound, σ broadcast to
    the batch, every call counted in the loop context and its output checked (finite, same shape
    and dtype as x) with the step named in the error."""

    def __init__(self, denoiser, cond, ctx: LoopContext, check_finite: bool = True):
        self.denoiser, self.cond, self.ctx, self.check_finite = denoiser, cond, ctx, check_finite

    def __call__(self, x: Tensor, sigma) -> Tensor:
        ctx = self.ctx
        sigma = as_batch_sigma(sigma, x)
        ctx.sigma = sigma
        out = self.denoiser(x, sigma, self.cond) if self.cond is not None else self.denoiser(x, sigma)
        ctx.nfe += 1
        ctx.stage += 1
        where = f"at step {ctx.step} (σ={float(sigma[0]):.4g})"
        if not torch.is_tensor(out):
            raise TypeError(f"the denoiser returned {type(out).__name__}, not a tensor, {where}")
        if out.shape != x.shape:
            raise ValueError(f"the denoiser returned shape {tuple(out.shape)} for input {tuple(x.shape)} {where}")
        if not out.is_floating_point():
            raise TypeError(f"the denoiser returned dtype {out.dtype} {where}; it must return floating point")
        if self.check_finite and not torch.isfinite(out).all():
            raise FloatingPointError(f"the denoiser returned NaN/inf {where}")
        return out.to(x.dtype)

    def tiled(self, p: int) -> "BoundDenoiser":
        """The same denoiser for ``p`` stacked copies of the batch (a per-sample condition is
        repeated p times), so a window of p steps is ONE counted call (parallel samplers)."""
        cond = self.cond
        if p > 1:
            cond = map_cond(lambda c: torch.cat([c] * p) if torch.is_tensor(c) and c.ndim > 0 else c, cond)
        return BoundDenoiser(self.denoiser, cond, self.ctx, self.check_finite)


class Loop:
    """What a loop-form solver (adaptive, parallel, restart) gets: the bound ``denoiser``, its
    segment's ``sigmas`` (local indices 0..len-1 are true steps ``offset``..), the ``noise``
    stream, ``stats`` to publish counters in, ``begin(j)`` / ``done(j, x, denoised)`` around its
    local step j, and ``run`` / ``solve`` to delegate fixed-grid work to the driver."""

    def __init__(self, session: "Session", start: int, stop: int):
        self.session, self.offset = session, start
        self.sigmas = session.sigmas[start:stop + 1]
        if stop < len(session.sigmas) - 1:        # a segment ending above 0 still ends in 0 for the solver
            self.sigmas = torch.cat([self.sigmas, self.sigmas.new_zeros(1)])
        self.denoiser, self.noise, self.stats = session.denoiser, session.noise, session.stats

    def begin(self, j: int) -> None:
        self.session.begin(self.offset + j)

    def done(self, j: int, x: Tensor, denoised: Tensor | None, sigma_hat: float | None = None, **extra) -> None:
        self.session.done(self.offset + j, x, denoised, sigma_hat, **extra)

    def run(self, solver, x: Tensor, start: int, stop: int, **options) -> Tensor:
        """Steps ``start..stop-1`` (local indices) of ``solver`` through the driver."""
        return self.session.run(x, solver, start=self.offset + start, stop=self.offset + stop, **options)

    def solve(self, solver, x: Tensor, sigmas, **options) -> Tensor:
        """An inner solve on its own grid ``sigmas`` (ending above 0 or at 0) inside the current
        step: evaluations are counted (the stage keeps counting), the step index does not move
        and no callback fires."""
        return self.session.solve(x, solver, sigmas, **options)


def _equal(a, b) -> bool:
    try:
        return bool(a == b)
    except (RuntimeError, ValueError, TypeError):   # e.g. tensors inside
        return False


class Session:
    """One generation of sampling: a loop context, the bound denoiser and the noise stream, over
    which any number of segments of the schedule ``sigmas`` run with their true step indices::

        with Session(D, sigmas, cond=labels, seed=0) as s:
            x_k = s.run(x, "ddim", stop=k)          # steps 0..k-1
            x = s.run(edit(x_k), "ddim", start=k)   # steps k..n-1, same generation
        s.nfe, s.steps
    """

    def __init__(self, denoiser: Callable, sigmas, cond=None, *, seed: int | None = None,
                 seeds: Sequence[int] | None = None, noise: Callable | None = None,
                 callback: Callable | None = None, progress: bool = False, check_finite: bool = True,
                 desc: str = "sampling"):
        if not callable(denoiser):
            raise TypeError(f"denoiser must be callable D(x, sigma, cond=None), got {type(denoiser).__name__}")
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable")
        self.sigmas = check_sigmas(sigmas)
        self.n = len(self.sigmas) - 1
        self._sig = self.sigmas.tolist()
        self.base, self.cond, self.check_finite = denoiser, cond, check_finite
        self.seed = None if seed is None else check_seed(seed)
        self.seeds, self._noise, self.callback = seeds, noise, callback
        self.progress, self.desc = progress, desc
        self.noise = None
        self.steps, self.stats = 0, {}
        self._stack, self._last = None, None

    # -- context ------------------------------------------------------------------------
    def __enter__(self) -> "Session":
        self._stack = ExitStack()
        self.ctx = self._stack.enter_context(loop_context(self.n))
        self._stack.enter_context(torch.no_grad())
        self.denoiser = BoundDenoiser(self.base, self.cond, self.ctx, self.check_finite)
        self.bar = None
        if self.progress:
            from tqdm.auto import tqdm
            self.bar = self._stack.enter_context(tqdm(total=self.n, desc=self.desc, leave=False))
        return self

    def __exit__(self, *exc):
        self._stack.close()
        return False

    @property
    def nfe(self) -> int:
        return self.ctx.nfe

    def _noise_for(self, x: Tensor) -> Callable:
        if self.noise is None:
            if self._noise is not None:
                self.noise = self._noise
            elif self.seeds is not None:
                self.noise = NoiseSampler(self.seeds, device=x.device)
            else:
                self.noise = solver_noise(self.seed, x.shape[0], device=x.device)
        return self.noise

    def _check_cond(self, x: Tensor) -> None:
        for c in cond_leaves(self.cond):       # a tensor, or a dict of model keywords (SDXL, PixArt)
            if torch.is_tensor(c) and c.ndim > 0 and c.shape[0] not in (1, x.shape[0]):
                raise ValueError(f"cond has batch {c.shape[0]} but x has batch {x.shape[0]}")

    # -- what the loop does around every step ----------------------------------------------
    def begin(self, i: int) -> None:
        self.ctx.step, self.ctx.stage = i, 0

    def done(self, i: int, x: Tensor, denoised: Tensor | None, sigma_hat: float | None = None, **extra) -> None:
        self.steps += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.callback is not None:
            sig = extra.pop("sigma", self.sigmas[min(i, self.n - 1)])
            self.callback({"x": x, "i": i, "sigma": sig, "sigma_hat": float(sig) if sigma_hat is None else sigma_hat,
                           "denoised": denoised, **extra})

    def _check_state(self, x_new: Tensor, x: Tensor, i: int) -> None:
        if not torch.is_tensor(x_new) or x_new.shape != x.shape or x_new.dtype != x.dtype:
            got = f"shape {tuple(x_new.shape)} {x_new.dtype}" if torch.is_tensor(x_new) else type(x_new).__name__
            raise RuntimeError(f"step {i} returned {got} for a state of shape {tuple(x.shape)} {x.dtype} "
                               "(a solver bug)")

    # -- segments ---------------------------------------------------------------------------
    def run(self, x: Tensor, solver="euler", *, start: int = 0, stop: int | None = None, **options) -> Tensor:
        """Run steps ``start..stop-1`` of the schedule with ``solver`` from ``x`` (the state at
        ``sigmas[start]``); returns the state at ``sigmas[stop]`` (the sample when stop = n)."""
        sol = get(solver)
        stop = self.n if stop is None else stop
        for name, v in (("start", start), ("stop", stop)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an integer step index, got {v!r}")
        if not 0 <= start <= stop <= self.n:
            raise ValueError(f"need 0 <= start <= stop <= {self.n} (the schedule's steps), got start={start}, stop={stop}")
        check_x(x)
        self._check_cond(x)
        noise = self._noise_for(x)
        opts = sol.options(options)
        if start == stop:
            return x                       # an empty segment: nothing to integrate
        if sol.loop:
            return sol.fn(Loop(self, start, stop), x, **opts)
        D, sig, state = self.denoiser, self._sig, None
        last = self._last
        if last is not None and last[0] is x and last[1] is sol and last[2] == start and _equal(last[3], options):
            state = last[4]            # continuing the very state the last segment returned: keep its history
        for i in range(start, stop):
            self.begin(i)
            step = Step(i, self.n, sig[i], sig[i + 1], self.sigmas, noise)
            if sig[i + 1] == 0 and sol.final == "denoised":
                x_new = denoised = D(x, sig[i])
            else:
                x_new, denoised, state = sol.fn(D, x, step, state, **opts)
            self._check_state(x_new, x, i)
            x = x_new
            self.done(i, x, denoised, step.sigma_hat)
        self._last = (x, sol, stop, options, state)
        return x

    def solve(self, x: Tensor, solver, sigmas, **options) -> Tensor:
        """Solve on the grid ``sigmas`` (any decreasing σ's, ending above 0 or at 0) inside the
        current step: counted, no step advance, no callback. Restart's re-solves use it."""
        sol = get(solver)
        if sol.loop:
            raise ValueError(f"{sol.name!r} chooses its own steps; an inner solve needs a fixed-grid solver")
        sig = torch.as_tensor(sigmas, dtype=torch.float64)
        ends_above = float(sig[-1]) > 0
        grid = check_sigmas(torch.cat([sig, sig.new_zeros(1)]) if ends_above else sig)
        s, n = grid.tolist(), len(grid) - 1 - int(ends_above)
        opts, state, noise = sol.options(options), None, self._noise_for(x)
        for i in range(n):
            step = Step(i, len(s) - 1, s[i], s[i + 1], grid, noise)
            if s[i + 1] == 0 and sol.final == "denoised":
                x_new = self.denoiser(x, s[i])
            else:
                x_new, _, state = sol.fn(self.denoiser, x, step, state, **opts)
            self._check_state(x_new, x, self.ctx.step)
            x = x_new
        return x


_PLAN_RUNNER: list = []     # effdiff.plan registers how a plan samples (the driver does not import it)


def register_plan_runner(fn: Callable) -> None:
    """Set what ``sample(..., plan=...)`` calls: ``fn(plan, denoiser, x, cond, seed=, return_info=, **kw)``."""
    _PLAN_RUNNER[:] = [fn]


def sample(denoiser: Callable, x: Tensor, sigmas=None, solver=None, cond=None, *, start: int = 0,
           stop: int | None = None, seed: int | None = None, seeds: Sequence[int] | None = None,
           noise: Callable | None = None, callback: Callable | None = None, return_info: bool = False,
           progress: bool = False, check_finite: bool = True, plan=None, **options):
    """Integrate from ``x`` (noise at ``sigmas[start]``) down the σ schedule with ``solver``
    (default euler); or, with ``plan`` (a ``Spec``, ``Plan`` or plan/spec file), from unit noise
    ``x`` with the plan's schedule, solver, guidance and techniques.

    denoiser: any ``D(x, sigma, cond=None) -> x0``; cond: passed through (class labels...).
    start / stop: run only steps start..stop-1 (hooks see the true step indices).
    seed / seeds: per-sample noise for stochastic solvers (same seed, same sample, at any batch
    size); noise: a custom ``noise(like)`` instead. callback(dict) is called after each step with
    x, i, sigma, sigma_hat, denoised. options go to the solver (eta, s_churn, order...).
    Returns x, or a ``SampleResult`` (x, nfe, steps, stats) with ``return_info=True``.
    """
    if plan is not None:
        if sigmas is not None or solver is not None or options or start or stop is not None or seeds or noise:
            raise TypeError("sample(plan=...) takes its schedule, solver and options from the plan; "
                            "pass only denoiser, x (unit noise), cond, seed, callback, progress, return_info")
        if not _PLAN_RUNNER:
            raise RuntimeError("sample(plan=...) needs effdiff.plan: import effdiff (or effdiff.plan) first")
        return _PLAN_RUNNER[0](plan, denoiser, x, cond, seed=seed, return_info=return_info, callback=callback,
                               progress=progress, check_finite=check_finite)
    if sigmas is None:
        raise TypeError("sample() needs sigmas (a σ schedule ending in 0), or plan=")
    sol = get("euler" if solver is None else solver)
    with Session(denoiser, sigmas, cond, seed=seed, seeds=seeds, noise=noise, callback=callback,
                 progress=progress, check_finite=check_finite, desc=sol.name) as s:
        out = s.run(x, sol, start=start, stop=stop, **options)
    if return_info:
        return SampleResult(out, s.nfe, s.steps, dict(s.stats))
    return out
