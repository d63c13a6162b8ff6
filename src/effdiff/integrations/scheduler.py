"""Every fixed-grid effdiff solver and schedule as a diffusers scheduler (``pip install effdiff[diffusers]``).

    pipe.scheduler = EffdiffScheduler.from_config(pipe.scheduler.config, solver="dpmpp-3m", schedule="karras")

A diffusers pipeline calls the model, then ``scheduler.step(model_output, t, latents)``; an
effdiff step function calls the denoiser itself. ``EffdiffScheduler`` turns one into the
other without touching the solver: ``set_timesteps`` dry-runs the solver on a zero model to
learn the σ of every evaluation (a multi-evaluation step such as Heun's or a singlestep
DPM-Solver's becomes several sub-steps, ``order`` of them, as in diffusers' own Heun), and
``step`` replays the step function on the model outputs received so far in this step
(``_Replay``): it either asks for the next evaluation (``prev_sample`` is the point to
evaluate at) or finishes the step. Multistep history stays in the scheduler between ``step``
calls, in one ``_Run`` per call and per thread (or asyncio task): one pipeline can serve several
threads at once, as diffusers' own stateless schedulers can.

Coordinates: the pipeline's latents are the network's input ``alpha(σ) x`` (VP: ``x_t``,
flow: ``x_t``, VE: ``x``), so ``scale_model_input`` is the identity and pipelines that never
call it (DiT) work too; the solver works on the VE-form ``x = x_t / alpha``. Model outputs
become x0 by the prediction type (epsilon, v_prediction, sample, flow velocity) with the same
code ``DiffusersDenoiser`` uses, so a pipeline run equals ``ed.sample`` on that denoiser.
Caches see the step: ``attach(model)`` (``effdiff.accelerate`` does it) runs the model inside
this generation's effdiff loop context.
"""
from __future__ import annotations

import contextvars
import inspect
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

from .. import solvers as _solvers
from .. import timesteps as _timesteps
from ..context import loop_context
from ..hooks import ModelHook, attach
from ..process import Flow
from ..sampling import check_sigmas, solver_noise
from .diffusers import Parameterization, model_input, process_from_scheduler, to_x0

Tensor = torch.Tensor


@dataclass
class EffdiffSchedulerOutput(SchedulerOutput):
    """``prev_sample`` and ``pred_original_sample``, the x0 of this evaluation (as DDIM's and
    DPM-Solver's outputs carry; PixArt takes it at one inference step)."""

    pred_original_sample: Tensor | None = None


# Align Your Steps tables published for Stable Diffusion (Sabour et al. 2024), as diffusers ships them
AYS_TABLES = {"ays": "StableDiffusionTimesteps", "ays-sdxl": "StableDiffusionXLTimesteps"}


def supported_solvers() -> list[str]:
    """The solvers a scheduler can run: every fixed-grid one (loop-form solvers pick their own grid)."""
    return [n for n in _solvers.names() if not _solvers.get(n).loop]


def _fixed_grid(name):
    sol = _solvers.get(name)
    if sol.loop:
        raise ValueError(f"solver {sol.name!r} chooses its own steps and cannot run as a diffusers scheduler; "
                         f"supported: {', '.join(supported_solvers())}")
    return sol


class _NeedEval(Exception):
    """Raised inside a replayed step: the solver wants the model at (x, σ)."""

    def __init__(self, x: Tensor, sigma: float):
        self.x, self.sigma = x, sigma


def _as_float(sigma) -> float:
    return float(torch.as_tensor(sigma).reshape(-1)[0])


class _Replay:
    """The denoiser a step function sees: the x0's received in this step, in order; past them
    it raises ``_NeedEval``. ``record=True`` (the dry run) answers 0 and records the σ's."""

    def __init__(self, outs: list, record: bool = False):
        self.outs, self.record, self.k, self.sigmas = outs, record, 0, []

    def __call__(self, x: Tensor, sigma) -> Tensor:
        s = _as_float(sigma)
        self.sigmas.append(s)
        if self.record:
            return torch.zeros_like(x)
        if self.k == len(self.outs):
            raise _NeedEval(x, s)
        self.k += 1
        return self.outs[self.k - 1].to(x.dtype)


class _Noise:
    """Per-step noise that a replay reads again: draws are kept until the step is done."""

    def __init__(self, source):
        self.source, self.draws, self.k = source, [], 0

    def __call__(self, like: Tensor) -> Tensor:
        if self.k == len(self.draws):
            self.draws.append(self.source(like))
        self.k += 1
        return self.draws[self.k - 1]


def _zero_noise(like: Tensor) -> Tensor:
    return torch.zeros_like(like)


def _run_step(sol, D, x, i: int, sigmas: Tensor, sig: list, state, noise, options):
    """One step of ``sol`` exactly as the driver runs it (``Session.run``): the step to σ = 0 of a
    ``final="denoised"`` solver is the denoiser's output."""
    if sig[i + 1] == 0 and sol.final == "denoised":
        return D(x, sig[i]), state
    step = _solvers.Step(i, len(sig) - 1, sig[i], sig[i + 1], sigmas, noise)
    x_next, _, state = sol.fn(D, x, step, state, **options)
    return x_next, state


def evaluation_plan(solver, sigmas, **options) -> list[list[float]]:
    """The σ's at which ``solver`` evaluates the denoiser in each step of ``sigmas`` (a dry run on
    a zero model); a step's σ's never depend on the data for fixed-grid solvers."""
    sol = _fixed_grid(solver)
    sigmas = check_sigmas(sigmas)
    sig, opts, state = sigmas.tolist(), sol.options(options), None
    x, plan = torch.zeros(1, 1), []
    for i in range(len(sig) - 1):
        rec = _Replay([], record=True)
        x, state = _run_step(sol, rec, x, i, sigmas, sig, state, _zero_noise, opts)
        if not rec.sigmas:
            raise ValueError(f"solver {sol.name!r} made no evaluation in step {i}")
        plan.append(rec.sigmas)
    return plan


class _Generation:
    """One pipeline call's effdiff loop context, kept in its own ``contextvars.Context`` so the
    model can run inside it (``run``) between ``step`` calls."""

    def __init__(self, num_steps: int):
        self.py = contextvars.copy_context()
        self._cm = loop_context(num_steps)
        self.ctx = self.py.run(self._cm.__enter__)

    def __del__(self):   # a run abandoned half-way: leave the context from inside it
        self.close()

    def run(self, fn, *args, **kwargs):
        return self.py.run(fn, *args, **kwargs)

    def close(self) -> None:
        if self._cm is not None:
            self.py.run(self._cm.__exit__, None, None, None)
            self._cm = None


class _Run:
    """Everything one pipeline call changes: its grid, evaluation plan, ``timesteps``, position,
    multistep history and loop context. A scheduler keeps one per ``contextvars`` context (each
    thread, each asyncio task), so one pipeline can be called from several threads at once."""

    def __init__(self, grid: Tensor, plan: list, timesteps: Tensor, sigmas: Tensor, order: int):
        self.grid, self.plan, self.timesteps, self.sigmas, self.order = grid, plan, timesteps, sigmas, order
        self.num_inference_steps = len(grid) - 1
        self.generation = _Generation(self.num_inference_steps)
        self.step_index = self.begin_index = None
        self.x = self.state = self.emitted = self.noise = self.pending = self.source = None
        self.outs: list = []
        self.extra: dict = {}          # listeners' per-call data (``accelerate``'s stats snapshot)


_RUNS: contextvars.ContextVar[dict] = contextvars.ContextVar("effdiff_scheduler_runs", default={})


class LoopHook(ModelHook):
    """Runs the model inside the scheduler's loop context with the true step, stage and σ, so
    effdiff's caches and hooks work inside a diffusers pipeline."""

    name = "effdiff-loop"

    def __init__(self, scheduler: "EffdiffScheduler"):
        self.scheduler = scheduler

    def __call__(self, module, call_next, *args, **kwargs):
        run = self.scheduler._run()
        pos = self.scheduler._position()
        if run is None or pos is None:
            return call_next(*args, **kwargs)
        gen = run.generation
        ctx = gen.ctx
        ctx.step, ctx.stage, sigma = pos
        ctx.sigma = torch.tensor([sigma])
        out = gen.run(call_next, *args, **kwargs)
        ctx.nfe += 1
        return out


class EffdiffScheduler(SchedulerMixin, ConfigMixin):
    """A diffusers scheduler running effdiff's ``solver`` on effdiff's ``schedule``.

    solver: any fixed-grid solver name (``supported_solvers()``); solver_options: its options.
    schedule: an ``effdiff.timesteps`` name (karras, exponential, uniform, leading, trailing,
    flow-shift, ...), ``"ays"`` / ``"ays-sdxl"`` (the published Align Your Steps tables) or a
    fitted ``"ays:MODEL"``; schedule_options: its options. steps: None (default) takes each call's
    ``num_inference_steps``, as every diffusers scheduler does; set, it pins the step count and a
    call asking for another count gets a warning. seed: effdiff's per-sample solver noise (as
    ``ed.sample(seed=)``) for stochastic solvers; otherwise the pipeline's generator.
    The remaining fields describe the model's training process as diffusers schedulers do;
    ``from_config(pipe.scheduler.config, ...)`` copies them (a FlowMatch config sets ``flow``).
    """

    @register_to_config
    def __init__(self, solver: str = "dpmpp-2m", schedule: str | None = None, steps: int | None = None,
                 solver_options: dict | None = None, schedule_options: dict | None = None, seed: int | None = None,
                 num_train_timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02,
                 beta_schedule: str = "linear", trained_betas=None, prediction_type: str = "epsilon",
                 steps_offset: int = 0, flow: bool = False, shift: float = 1.0):
        self.solver = _fixed_grid(solver)
        self.options = self.solver.options(dict(solver_options or {}))
        if flow:
            self.param = Parameterization(Flow(), "velocity")
        else:
            cfg = {k: v for k, v in self.config.items() if not k.startswith("_")}
            self.param = Parameterization(*process_from_scheduler(cfg))
        self._key = object()          # this scheduler's slot in ``_RUNS`` (per thread / task)
        self.listeners: list = []     # fn(run) called when a call starts (``set_timesteps``)

    @classmethod
    def from_config(cls, config=None, return_unused_kwargs=False, **kwargs):
        """From any diffusers scheduler's config (a FlowMatch one sets ``flow=True``) with
        ``solver=``, ``schedule=`` ... overriding."""
        cfg = dict(getattr(config, "config", config) or {})
        cls_name = str(cfg.get("_class_name", type(config).__name__))
        # a live config has no _class_name: FlowMatch configs are the ones with a shift and no betas
        if "FlowMatch" in cls_name or ("shift" in cfg and "beta_start" not in cfg):
            kwargs.setdefault("flow", True)
        known = set(inspect.signature(cls.__init__).parameters)
        cfg = {k: v for k, v in cfg.items() if k in known or k.startswith("_")}   # other schedulers' fields go
        return super().from_config(cfg, return_unused_kwargs=return_unused_kwargs, **kwargs)

    # -- the per-call state (one ``_Run`` per thread / asyncio task) ---------------------------
    def _run(self) -> _Run | None:
        return _RUNS.get().get(self._key)

    def _set_run(self, run: _Run) -> None:
        _RUNS.set({**_RUNS.get(), self._key: run})

    def _need_run(self) -> _Run:
        run = self._run()
        if run is None:
            raise ValueError("call set_timesteps before step (in the same thread)")
        return run

    def _field(name, default=None, doc=""):
        return property(lambda self: getattr(self._run(), name, default), doc=doc)

    timesteps = _field("timesteps", doc="The model's time input of every evaluation of this call's plan.")
    sigmas = _field("sigmas", doc="σ of every evaluation of this call's plan, then 0.")
    grid = _field("grid", doc="This call's σ grid (float64, ends in 0).")
    num_inference_steps = _field("num_inference_steps")
    order = _field("order", 1, "Evaluations per step (at most): diffusers pipelines read it.")
    _plan = _field("plan")
    del _field

    # -- the grid ---------------------------------------------------------------------------
    @property
    def process(self):
        return self.param.process

    def schedule_sigmas(self, n: int) -> Tensor:
        """The σ grid (float64, ending in 0) of this scheduler's schedule for n steps."""
        name = self.config.schedule or ("flow-shift" if self.config.flow else "karras")
        kw = dict(self.config.schedule_options or {})
        if name in AYS_TABLES:
            from diffusers.schedulers.scheduling_utils import AysSchedules
            from ..schedule_opt import interpolate
            t = torch.tensor(AysSchedules[AYS_TABLES[name]], dtype=torch.float64)
            return interpolate(_timesteps.append_zero(self.process.t_to_sigma(t)), n)
        if name == "flow-shift":
            kw.setdefault("shift", self.config.shift)
        if name in ("leading", "linspace", "trailing"):
            kw.setdefault("steps_offset", self.config.steps_offset)
        return _timesteps.get(name, n, self.process, **kw)

    def _custom_sigmas(self, timesteps, sigmas) -> Tensor:
        """VE σ's from a pipeline's own ``sigmas`` (flow: its t in [0, 1]) or ``timesteps``."""
        proc = self.process
        if sigmas is not None:
            s = torch.as_tensor(np.asarray(sigmas, dtype=np.float64))
            if isinstance(proc, Flow):
                s = proc.t_to_sigma(s.clamp(max=proc.t_max))
        else:
            t = torch.as_tensor(np.asarray(timesteps, dtype=np.float64))
            if not getattr(proc, "discrete", False) and not isinstance(proc, Flow):
                raise ValueError("custom timesteps need a discrete (DDPM-table) or flow process; pass sigmas=")
            s = proc.t_to_sigma(t if getattr(proc, "discrete", False) else t / 1000.0)
        return s if float(s[-1]) == 0 else _timesteps.append_zero(s)

    def set_timesteps(self, num_inference_steps: int | None = None, device=None, timesteps=None, sigmas=None, **kwargs):
        """Build the grid, the evaluation plan and ``timesteps`` (one per model evaluation);
        a new call starts a new generation (fresh multistep history and caches)."""
        if timesteps is not None or sigmas is not None:
            grid = self._custom_sigmas(timesteps, sigmas)
        else:
            grid = self.schedule_sigmas(self._steps(num_inference_steps))
        grid = check_sigmas(grid)
        per_step = evaluation_plan(self.solver, grid, **self.options)
        plan = [(i, k, s) for i, ss in enumerate(per_step) for k, s in enumerate(ss)]
        evals = torch.tensor([s for _, _, s in plan], dtype=torch.float32).double()   # σ as the model sees it
        t = self.process.c_noise(self.process.sigma_to_t(evals)).to(device=device, dtype=torch.float32)
        old = self._run()
        if old is not None:
            old.generation.close()
        run = _Run(grid, plan, t, torch.cat([evals, evals.new_zeros(1)]).float(), max(len(ss) for ss in per_step))
        self._set_run(run)
        for fn in self.listeners:
            fn(run)

    def _steps(self, requested) -> int:
        """The call's ``num_inference_steps`` unless ``steps`` is pinned (then a warning if they differ)."""
        pinned = self.config.steps
        if pinned is None:
            if requested is None:
                raise ValueError("set_timesteps needs num_inference_steps (or steps= in the scheduler config)")
            return int(requested)
        if requested is not None and int(requested) != int(pinned):
            warnings.warn(f"EffdiffScheduler: steps={pinned} was pinned (accelerate(..., steps={pinned})), so this "
                          f"call's num_inference_steps={requested} is ignored; leave steps unset to follow the call",
                          stacklevel=3)
        return int(pinned)

    # -- diffusers' protocol ----------------------------------------------------------------
    @property
    def init_noise_sigma(self) -> float:
        """Std of the initial latents: ``alpha(σ_0) σ_0`` (1 before ``set_timesteps``)."""
        if self._plan is None:
            return 1.0
        s = float(self.grid[0])
        return s * float(self.process.alpha_of_sigma(s))

    @property
    def step_index(self) -> int | None:
        return getattr(self._run(), "step_index", None)

    @property
    def begin_index(self) -> int | None:
        return getattr(self._run(), "begin_index", None)

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at evaluation ``begin_index`` (img2img); it must begin a step."""
        plan = self._plan
        if plan is None or not 0 <= begin_index < len(plan) or plan[begin_index][1] != 0:
            raise ValueError(f"begin_index {begin_index} is not the start of a step of this scheduler's plan")
        self._run().begin_index = begin_index

    def scale_model_input(self, sample: Tensor, timestep=None) -> Tensor:
        """The identity: the latents already are the network's input ``alpha x``."""
        return sample

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def index_for_timestep(self, timestep) -> int:
        """The first evaluation that starts a step at ``timestep``."""
        t = float(torch.as_tensor(timestep).reshape(-1)[0])
        run = self._need_run()
        for j, (_, k, _) in enumerate(run.plan):
            if k == 0 and math.isclose(float(run.timesteps[j]), t, rel_tol=1e-5, abs_tol=1e-4):
                return j
        raise ValueError(f"timestep {t} does not start a step of this scheduler's plan")

    def _position(self):
        """(step, stage, σ) of the evaluation in progress, or None outside a run."""
        run = self._run()
        if run is None:
            return None
        j = run.step_index if run.step_index is not None else (run.begin_index or 0)
        return run.plan[j] if j < len(run.plan) else None

    def _ve(self, run: _Run, sample: Tensor, sigma: float, stored: Tensor | None) -> Tensor:
        """The VE-form state behind ``sample``: the one this scheduler emitted when the pipeline
        passed it back unchanged, else ``sample / alpha(σ)``."""
        if stored is not None and sample is run.emitted:
            return stored
        x = sample.float() if sample.dtype in (torch.float16, torch.bfloat16) else sample
        return x / model_input(self.param, x, sigma)[2][0]

    def _latents(self, run: _Run, x: Tensor, sigma: float, like: Tensor) -> Tensor:
        """What the pipeline holds and the model is fed: ``alpha(σ) x`` (x itself at σ = 0)."""
        out = x if sigma == 0 else model_input(self.param, x, sigma)[0]
        run.emitted = out.to(like.dtype)
        return run.emitted

    def _noise_source(self, x: Tensor, generator):
        if self.config.seed is not None:
            return solver_noise(self.config.seed, x.shape[0], device=x.device)
        if generator is not None:
            return lambda like: torch.randn(like.shape, generator=generator, dtype=like.dtype,
                                            device=generator.device).to(like.device)
        return torch.randn_like

    def step(self, model_output: Tensor, timestep, sample: Tensor, generator=None, return_dict: bool = True):
        """Feed one model evaluation; ``prev_sample`` is where to evaluate next (the end of the
        step when the step is complete), ``pred_original_sample`` this evaluation's x0."""
        run = self._need_run()
        if run.step_index is None:
            run.step_index = run.begin_index if run.begin_index is not None else self.index_for_timestep(timestep)
        j = run.step_index
        if j >= len(run.plan):
            raise ValueError(f"all {len(run.plan)} evaluations of this plan are done; call set_timesteps again")
        i, k, sigma = run.plan[j]
        if k == 0:
            run.x = self._ve(run, sample, sigma, run.x)
            if run.source is None:     # one noise stream per generation, as in ed.sample
                run.source = self._noise_source(run.x, generator)
            run.outs, run.noise = [], _Noise(run.source)
        x_eval = run.x if k == 0 else self._ve(run, sample, sigma, run.pending)
        xn, _, coefs = model_input(self.param, x_eval, sigma)
        x0 = to_x0(self.param, model_output.to(x_eval.dtype), x_eval, xn, coefs)
        run.outs.append(x0)
        prev = self._advance(run, i, j, sample)
        run.step_index = j + 1
        if run.step_index == len(run.plan):
            run.generation.close()
        x0 = x0.to(sample.dtype)
        return EffdiffSchedulerOutput(prev_sample=prev, pred_original_sample=x0) if return_dict else (prev, x0)

    def _advance(self, run: _Run, i: int, j: int, like: Tensor) -> Tensor:
        """Replay step i on the outputs so far: the next evaluation point, or the step's end."""
        replay, sig = _Replay(run.outs), run.grid.tolist()
        run.noise.k = 0
        try:
            x_next, state = _run_step(self.solver, replay, run.x, i, run.grid, sig, run.state, run.noise, self.options)
        except _NeedEval as need:
            want = run.plan[j + 1] if j + 1 < len(run.plan) else None
            if want is None or want[0] != i or not math.isclose(want[2], need.sigma, rel_tol=1e-9, abs_tol=1e-12):
                raise RuntimeError(f"solver {self.solver.name!r} asked for σ={need.sigma:.6g} in step {i}, "
                                   "off the plan made by set_timesteps (its σ's depend on the data)") from None
            run.pending = need.x
            return self._latents(run, need.x, need.sigma, like)
        if replay.k != len(run.outs):
            raise RuntimeError(f"step {i} used {replay.k} of {len(run.outs)} evaluations")
        run.x, run.state = x_next, state
        return self._latents(run, x_next, sig[i + 1], like)

    def add_noise(self, original_samples: Tensor, noise: Tensor, timesteps) -> Tensor:
        """``alpha(σ) (x0 + σ noise)`` at the σ of each timestep of this plan (img2img)."""
        ts = torch.as_tensor(timesteps).reshape(-1)
        idx = [self.index_for_timestep(t) for t in ts.tolist()]
        plan = self._need_run().plan
        sig = torch.tensor([plan[j][2] for j in idx], dtype=torch.float64)
        if len(sig) == 1:
            sig = sig.expand(original_samples.shape[0])
        x = original_samples.float()
        s = sig.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return model_input(self.param, x + s * noise.to(x.dtype), sig)[0].to(original_samples.dtype)

    def attach(self, model):
        """Run ``model`` (a pipeline's unet / transformer) inside this scheduler's loop context,
        so effdiff caches see the step; returns the hook ``Handle``."""
        return attach(LoopHook.name, [(model, LoopHook(self))])
