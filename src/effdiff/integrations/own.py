"""Bring your own model: any ``nn.Module`` under its own time convention and prediction type
as an effdiff denoiser, with a check that catches a wrong convention.

    den = effdiff.integrations.own.wrap(net, time="ddpm", prediction="eps", integer=True,
                                        call=lambda net, x, t, cond: net(x, t.view(-1, 1)))
    effdiff.integrations.own.validate(den, shape=(1, 28, 28))      # raises on a wrong convention
    x = ed.sample(den, ed.sampling.randn((16, 1, 28, 28), seed=0) * sig[0], sig, "dpmpp-2m")

Time conventions (``TIMES``): what the network is told, from effdiff's σ via the process
(default process in brackets):

- ``"ddpm"``: the step index t in 0..T-1 of a discrete DDPM table [``VP("linear")``, 1000
  steps]; ``integer=True`` rounds to the nearest step and passes a LongTensor.
- ``"t"``: continuous t in [0, 1] with t = 0 the data [``Flow()``; or ``VP(discrete=False)``].
- ``"1-t"``: continuous time running the other way, t = 1 the data (torchcfm) [``Flow()``].
- ``"sigma"`` / ``"log-sigma"``: σ or ln σ of ``x = x0 + σ eps`` [``EDM()``, alpha = 1].

``scale`` multiplies the time (SD-style 1000 t). Predictions: eps, x0, v, velocity (d x_t / d
time, in the model's own time direction), score. ``call(net, x_t, time, cond)`` adapts the
signature (default ``net(x_t, time)``, or ``net(x_t, time, cond)`` when cond is given).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..denoisers import Denoiser, PREDICTIONS, as_batch_sigma
from ..process import EDM, VP, Flow, Process
from .diffusers import model_input, to_x0

Tensor = torch.Tensor


@dataclass(frozen=True)
class TimeConvention:
    """How σ becomes the network's time input: ``of(t, sigma)`` from the process time t;
    ``sign`` of the model's velocity against the process's time direction."""
    of: Callable[[Tensor, Tensor], Tensor]
    default_process: Callable[[], Process]
    sign: float = 1.0


TIMES = {
    "ddpm": TimeConvention(lambda t, s: t, lambda: VP("linear")),
    "t": TimeConvention(lambda t, s: t, Flow),
    "1-t": TimeConvention(lambda t, s: 1 - t, Flow, -1.0),
    "sigma": TimeConvention(lambda t, s: s, EDM),
    "log-sigma": TimeConvention(lambda t, s: torch.log(s), EDM),
}


def _default_call(net, x, time, cond):
    return net(x, time) if cond is None else net(x, time, cond)


class OwnModel(nn.Module):
    """``net`` under time convention ``time`` and ``prediction`` as ``D(x, sigma, cond) -> x0``."""

    def __init__(self, net: nn.Module, time: str, prediction: str, process: Process | None = None,
                 scale: float = 1.0, integer: bool = False, call: Callable | None = None, mirror: bool = False):
        super().__init__()
        if time not in TIMES:
            raise ValueError(f"unknown time convention {time!r}; known: {', '.join(TIMES)}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; known: {', '.join(PREDICTIONS)}")
        if time == "ddpm" and process is not None and not getattr(process, "discrete", False):
            raise ValueError("time='ddpm' needs a discrete VP process (a DDPM table)")
        self.net, self.time, self.prediction = net, time, prediction
        self.convention = TIMES[time]
        self.process = process if process is not None else self.convention.default_process()
        self.scale, self.integer, self.call = float(scale), bool(integer), call or _default_call
        self.mirror = bool(mirror)   # tell the network the mirrored time (the check's wrong-direction probe)

    def mirrored(self) -> "OwnModel":
        """The same network told the time run backwards over the process's range."""
        return OwnModel(self.net, self.time, self.prediction, self.process, self.scale, self.integer, self.call,
                        not self.mirror)

    coefficients = Denoiser.coefficients

    def network_time(self, sigma: Tensor) -> Tensor:
        """The network's time input for σ [B] (float64, or rounded int64 when ``integer``)."""
        s = sigma.double()
        if self.mirror:
            p = self.process
            s = p.t_to_sigma(p.t_min + p.t_max - p.sigma_to_t(s))
        tau = self.convention.of(self.process.sigma_to_t(s), s) * self.scale
        return tau.round().long() if self.integer else tau

    def forward(self, x: Tensor, sigma, cond=None) -> Tensor:
        sigma = as_batch_sigma(sigma, x)
        xn, _, coefs = model_input(self, x, sigma)
        p = next(iter(self.net.parameters()), None)
        dtype = p.dtype if p is not None else x.dtype
        tau = self.network_time(sigma).to(x.device)
        out = self.call(self.net, xn.to(dtype), tau if self.integer else tau.to(dtype), cond)
        if self.prediction == "velocity" and self.convention.sign < 0:
            out = -out
        return to_x0(self, out.to(x.dtype), x, xn, coefs)


def wrap(net: nn.Module, time: str = "ddpm", prediction: str = "eps", process: Process | None = None, *,
         scale: float = 1.0, integer: bool = False, call: Callable | None = None) -> OwnModel:
    """A user's network as an effdiff denoiser (see the module docstring for the conventions)."""
    return OwnModel(net, time, prediction, process, scale, integer, call)


# ---------------------------------------------------------------------------------------
# validation: does the wrapped model denoise?
# ---------------------------------------------------------------------------------------

@dataclass
class Validation:
    """Per noise level σ: the model's denoising MSE over the per-pixel Wiener filter's (the best
    linear denoiser for the data's own mean and variance), and the same ratio when the network
    is told the mirrored time (``OwnModel`` only). ``ok``: at the highest σ the ratio is below
    ``limit`` (there any trained denoiser is about as good as the linear one; a wrong time or
    output type is far worse), and over all levels the declared time beats the mirrored one
    (at low σ a model trained with path noise can trail the Wiener filter, so no limit there)."""
    sigmas: list
    ratios: list
    limit: float
    mirrored: list | None = None

    @property
    def ok(self) -> bool:
        better = self.mirrored is None or sum(self.ratios) < sum(self.mirrored)
        return better and self.ratios[self.sigmas.index(max(self.sigmas))] < self.limit

    def __str__(self) -> str:
        rows = ", ".join(f"σ={s:.3g}: {r:.2f}" for s, r in zip(self.sigmas, self.ratios))
        out = f"denoising MSE / Wiener MSE ({rows}); limit {self.limit}"
        if self.mirrored is not None:
            out += "; told the mirrored time: " + ", ".join(f"{r:.2f}" for r in self.mirrored)
        return out


def _own_samples(den, shape, n: int, seed: int, cond, steps: int = 20) -> Tensor:
    from .. import timesteps
    from ..sampling import randn, sample
    sig = timesteps.karras(steps, den.process.sigma_min, min(den.process.sigma_max, 80.0))
    return sample(den, randn((n, *shape), seed=seed) * sig[0], sig, "dpmpp-2m", cond=cond)


@torch.no_grad()
def check(den, data: Tensor | None = None, *, shape=None, sigmas=(0.1, 0.5, 2.0), n: int = 64, seed: int = 0,
          cond=None, limit: float = 1.25) -> Validation:
    """Denoise ``data`` (or, without data, the model's own samples: a wrong convention makes
    them poor images of themselves) at noise levels ``sigmas`` and compare the MSE with the
    per-pixel Wiener filter's, and with the time mirrored (see ``Validation.ok``)."""
    if data is None:
        if shape is None:
            raise ValueError("check() needs data or the sample shape (shape=(C, H, W))")
        data = _own_samples(den, tuple(shape), n, seed, cond)
    x0 = torch.as_tensor(data)[:n].float()
    if not torch.isfinite(x0).all():
        raise ValueError("the model's own samples are not finite: its time convention or prediction is wrong")
    mirrored = _ratios(den.mirrored(), x0, sigmas, seed, cond) if isinstance(den, OwnModel) else None
    return Validation([float(s) for s in sigmas], _ratios(den, x0, sigmas, seed, cond), limit, mirrored)


def _ratios(den, x0: Tensor, sigmas, seed: int, cond) -> list[float]:
    """Denoising MSE / per-pixel Wiener MSE at each σ (same noise for every call)."""
    var = x0.var(0)
    g = torch.Generator().manual_seed(2 ** 31 - 1 - seed)   # a stream unlike any data seed
    out = []
    for s in sigmas:
        eps = torch.randn(x0.shape, generator=g)
        d = den(x0 + s * eps, float(s)) if cond is None else den(x0 + s * eps, float(s), cond)
        wiener = float((var * s * s / (var + s * s)).mean())   # per-pixel linear MMSE
        out.append(float(((d - x0) ** 2).mean()) / wiener if wiener > 0 else math.inf)
    return out


def validate(den, data: Tensor | None = None, **kw) -> Validation:
    """``check`` that raises ValueError (naming the noise levels that failed) on a wrong convention."""
    v = check(den, data, **kw)
    if not v.ok:
        raise ValueError(f"the wrapped model does not denoise: {v}. Check the time convention "
                         f"(time={getattr(den, 'time', '?')!r}, known: {', '.join(TIMES)}), its scale and the "
                         f"prediction type ({getattr(den, 'prediction', '?')!r})")
    return v
