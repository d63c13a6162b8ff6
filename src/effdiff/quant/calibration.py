"""Calibration data drawn across the sampling trajectory (PTQ4DM, Shang et al. 2023; Q-Diffusion,
Li et al. 2023): the full-precision sampler runs once through ``ed.sample`` with spies on the
layers, which record each layer's input range per step (min/max and a value reservoir for the
percentile / MSE observers), and keep a few inputs of each layer and of the network for learned
rounding (AdaRound), the PTQD correction and the sensitivity search.

Which steps feed the scales is a *scheme*: ``trajectory`` (Q-Diffusion: every step of the run),
``ptq4dm`` (PTQ4DM's normally distributed time-step calibration: steps drawn with the fraction
t/T ~ N(μ, σ), skewed towards low noise) and ``noise`` (only x_T, the naive choice PTQ4DM shows fails).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from ..context import current_context, loop_context
from ..hooks import ModelHook, attach
from ..sampling import sample
from ..sites import network

Tensor = torch.Tensor
RESERVOIR = 4096        # values kept per layer, step and segment
SCHEMES = ("trajectory", "ptq4dm", "noise")


def scheme_steps(scheme: str, num_steps: int, mu: float = 0.4, sd: float = 0.25, draws: int = 64, seed: int = 0) -> list[int]:
    """The steps whose states calibrate the scales (step 0 = the noisiest)."""
    if scheme == "trajectory":
        return list(range(num_steps))
    if scheme == "noise":
        return [0]
    if scheme == "ptq4dm":
        g = torch.Generator().manual_seed(seed)
        t = (torch.randn(draws, generator=g) * sd + mu).clamp(0, 1)            # t/T, 0 = clean
        return sorted({min(num_steps - 1, int(round((1 - float(f)) * (num_steps - 1)))) for f in t})
    raise ValueError(f"unknown calibration scheme {scheme!r}; known: {', '.join(SCHEMES)}")


@dataclass
class LayerRecord:
    """One layer's observed inputs: per step the segment mins / maxes [S] and value reservoirs [S, n];
    ``inputs``: (step, tensor) pairs kept for reconstruction."""
    bounds: tuple[int, ...]
    dim: int
    lo: dict = field(default_factory=dict)
    hi: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)
    is_input: bool = False      # reads the network's own input (the noisy image)
    order: int = -1             # position of the layer's first call in the network's forward

    def segment_rows(self, x: Tensor) -> list[Tensor]:
        x = x.detach().float().movedim(self.dim, 0)
        return [x[a:b].reshape(-1) for a, b in zip(self.bounds[:-1], self.bounds[1:])]

    def observe(self, step: int, x: Tensor, keep: int, gen: torch.Generator) -> None:
        segs = self.segment_rows(x)
        lo, hi = torch.stack([s.min() for s in segs]), torch.stack([s.max() for s in segs])
        self.lo[step] = torch.minimum(self.lo[step], lo) if step in self.lo else lo
        self.hi[step] = torch.maximum(self.hi[step], hi) if step in self.hi else hi
        n = min(RESERVOIR, min(len(s) for s in segs))
        pick = [s[torch.randint(0, len(s), (n,), generator=gen)] for s in segs]
        old = self.values.get(step)
        new = torch.stack(pick)
        self.values[step] = new if old is None else torch.cat([old, new], 1)[:, -RESERVOIR:]
        if keep:
            self.inputs.append((step, x.detach()[:keep].clone()))

    def range(self, steps: list[int]) -> tuple[Tensor, Tensor]:
        steps = [s for s in steps if s in self.lo]
        return (torch.stack([self.lo[s] for s in steps]).amin(0), torch.stack([self.hi[s] for s in steps]).amax(0))

    def sample(self, steps: list[int]) -> Tensor:
        return torch.cat([self.values[s] for s in steps if s in self.values], 1)


class _LayerSpy(ModelHook):
    def __init__(self, record: LayerRecord, keep_steps: set, keep: int, net_input: dict):
        self.record, self.keep_steps, self.keep, self.net_input = record, keep_steps, keep, net_input
        self.gen = torch.Generator().manual_seed(0)

    def __call__(self, module, call_next, x, *args, **kwargs):
        self.record.is_input |= x is self.net_input.get("x")
        if self.record.order < 0:
            self.record.order = self.net_input["calls"] = self.net_input.get("calls", 0) + 1
        ctx = current_context()
        step = ctx.step if ctx is not None else 0
        fresh = ctx is None or ctx.stage == 0
        self.record.observe(step, x, self.keep if (step in self.keep_steps and fresh) else 0, self.gen)
        return call_next(x, *args, **kwargs)


class _NetSpy(ModelHook):
    """Keeps the network's inputs and full-precision outputs (first ``keep`` samples) per step."""

    def __init__(self, keep: int, out: list, net_input: dict):
        self.keep, self.out, self.net_input = keep, out, net_input

    def __call__(self, module, call_next, *args, **kwargs):
        self.net_input["x"] = args[0]
        y = call_next(*args, **kwargs)
        ctx = current_context()
        if ctx is not None and ctx.stage == 0:
            cut = tuple(a[:self.keep] if torch.is_tensor(a) and a.ndim > 0 else a for a in args)
            self.out.append((ctx.step, float(ctx.sigma.reshape(-1)[0]), cut, y.detach()[:self.keep]))
        return y


@dataclass
class Calibration:
    """What a calibration run observed: per-layer records, network (step, σ, args, output) tuples,
    the run's σ schedule and the steps the scheme selects."""
    layers: dict
    net_io: list
    sigmas: Tensor
    steps: list

    @property
    def num_steps(self) -> int:
        return len(self.sigmas) - 1

    def first_and_last(self) -> set[str]:
        """The layers that read the network's input and the layer that runs last (its output layer)."""
        last = max(self.layers, key=lambda n: self.layers[n].order)
        return {n for n, r in self.layers.items() if r.is_input} | {last}


def calibrate(denoiser, run, layers: dict, bounds: dict, scheme: str = "trajectory", keep: int = 4,
              keep_steps: int = 8) -> Calibration:
    """Run the full-precision sampler on ``run`` (a ``techniques.Run``) with spies on ``layers``
    (name -> module); ``bounds``: name -> channel segments of its input (Q-Diffusion's split)."""
    from .layers import channel_dim
    n = len(run.sigmas) - 1
    steps = scheme_steps(scheme, n)
    kept = set(steps[:: max(1, math.ceil(len(steps) / keep_steps))])
    records = {name: LayerRecord(bounds.get(name) or (0, _in_channels(m)), channel_dim(m)) for name, m in layers.items()}
    net_io: list = []
    net_input: dict = {}
    spies = [(m, _LayerSpy(records[name], kept, keep, net_input)) for name, m in layers.items()]
    net = network(denoiser)
    with attach("quant-calibration", spies + [(net, _NetSpy(keep, net_io, net_input))]), torch.no_grad():
        sample(run.denoiser if run.denoiser is not None else denoiser, run.x, run.sigmas, run.solver, run.cond, seed=run.seed)
    return Calibration(records, [io for io in net_io if io[0] in kept], torch.as_tensor(run.sigmas).float(), steps)


def _in_channels(m) -> int:
    return m.in_channels if hasattr(m, "in_channels") else m.in_features


@contextmanager
def at_step(num_steps: int, step: int, sigma):
    """The loop context of calibrated step ``step`` of ``num_steps`` at σ ``sigma``: per-step
    quantizers (TDQ scales, PTQD, learned step scales) look up that step while a recorded input runs."""
    with loop_context(num_steps, step=step) as ctx:
        ctx.sigma = torch.tensor([float(sigma)])
        yield ctx
