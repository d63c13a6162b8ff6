"""Bring your own model: any ``nn.Module`` under its own time convention and prediction type
as an effdiff denoiser, with a check that catches a wrong convention.

    den = effdiff.integrations.own.wrap(net, time="ddpm", prediction="eps", integer=True,
                                        call=lambda net, x, t, cond: net(x, t.view(-1, 1)))
    effdiff.integrations.own.validate(den, data)     # prints PASS / FAIL with the reason; raises on FAIL
    x = ed.sample(den, ed.sampling.randn((16, 1, 28, 28), seed=0) * sig[0], sig, "ddpm")

Any other interpolant ``x_t = alpha(t) x0 + sigma(t) eps`` is given as two torch functions of the
network's own time (the trigonometric path, stochastic interpolants)::

    den = wrap(net, prediction="velocity", alpha=lambda t: torch.sin(math.pi * t / 2),
               sigma=lambda t: torch.cos(math.pi * t / 2))

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
With ``alpha=``/``sigma=`` the time is the interpolant's own t (either direction) and a
velocity is d x_t / dt in that t.
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
from .interpolant import Interpolant

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


def _interpolant_time(p: Interpolant) -> TimeConvention:
    """The network is told its own t (velocity sign by the interpolant's direction)."""
    return TimeConvention(lambda u, s: p.model_time(u), lambda: p, p.sign)


def _default_call(net, x, time, cond):
    return net(x, time) if cond is None else net(x, time, cond)


class OwnModel(nn.Module):
    """``net`` under time convention ``time`` and ``prediction`` as ``D(x, sigma, cond) -> x0``."""

    def __init__(self, net: nn.Module, time: str, prediction: str, process: Process | None = None,
                 scale: float = 1.0, integer: bool = False, call: Callable | None = None, mirror: bool = False,
                 told: float = 1.0):
        super().__init__()
        if isinstance(process, Interpolant):
            time = "interpolant"
        elif time not in TIMES:
            raise ValueError(f"unknown time convention {time!r}; known: {', '.join(TIMES)}, or alpha=/sigma= functions")
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; known: {', '.join(PREDICTIONS)}")
        if time == "ddpm" and process is not None and not getattr(process, "discrete", False):
            raise ValueError("time='ddpm' needs a discrete VP process (a DDPM table)")
        self.net, self.time, self.prediction = net, time, prediction
        self.convention = _interpolant_time(process) if time == "interpolant" else TIMES[time]
        self.process = process if process is not None else self.convention.default_process()
        self.scale, self.integer, self.call = float(scale), bool(integer), call or _default_call
        # the check's probes: tell the network the mirrored time, or the time of σ * told
        self.mirror, self.told_factor = bool(mirror), float(told)

    def _probe(self, mirror: bool, told: float) -> "OwnModel":
        return OwnModel(self.net, self.time, self.prediction, self.process, self.scale, self.integer, self.call,
                        mirror, told)

    def mirrored(self) -> "OwnModel":
        """The same network told the time run backwards over the process's range."""
        return self._probe(not self.mirror, self.told_factor)

    def told(self, factor: float) -> "OwnModel":
        """The same network told the time of σ * ``factor`` (input and output conversion unchanged)."""
        return self._probe(self.mirror, factor)

    coefficients = Denoiser.coefficients

    def network_time(self, sigma: Tensor) -> Tensor:
        """The network's time input for σ [B] (float64, or rounded int64 when ``integer``)."""
        s = sigma.double() * self.told_factor
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
        try:
            out = self.call(self.net, xn.to(dtype), tau if self.integer else tau.to(dtype), cond)
        except RuntimeError as e:
            if not self.integer and "Long" in str(e) and "indices" in str(e):
                raise ValueError(f"the network looks its time up in a table (an nn.Embedding) and needs an integer step "
                                 f"index: wrap(..., time={self.time!r}, integer=True). ({e})") from None
            raise
        if self.prediction == "velocity" and self.convention.sign < 0:
            out = -out
        return to_x0(self, out.to(x.dtype), x, xn, coefs)


def wrap(net: nn.Module, time: str = "ddpm", prediction: str = "eps", process: Process | None = None, *,
         scale: float = 1.0, integer: bool = False, call: Callable | None = None, alpha: Callable | None = None,
         sigma: Callable | None = None, t_range: tuple = (0.0, 1.0)) -> OwnModel:
    """A user's network as an effdiff denoiser (see the module docstring for the conventions);
    ``alpha``/``sigma``: any interpolant x_t = alpha(t) x0 + sigma(t) eps in the network's time t."""
    if (alpha is None) != (sigma is None):
        raise ValueError("an interpolant needs both alpha= and sigma= (functions of the network's time t)")
    if alpha is not None:
        if process is not None:
            raise ValueError("give either process= or alpha=/sigma=, not both")
        process = Interpolant(alpha, sigma, t_range)
    return OwnModel(net, time, prediction, process, scale, integer, call)


# ---------------------------------------------------------------------------------------
# validation: does the wrapped model denoise as the claimed process says it should?
# ---------------------------------------------------------------------------------------

LEVELS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)       # noise levels checked, in units of the data's std
WHOLE_FROM = 0.5      # the whole-wrapper probe runs from this level up: below it, models trained with
                      # path noise (torchcfm's σ_min) cannot denoise finer than their training noise
SHIFTS = (-1.0, -0.5, -0.25, 0.25, 0.5, 1.0)   # log-σ offsets of the calibration probes


@dataclass
class Level:
    """One noise level σ: ``ratio`` = denoising MSE / the per-pixel Wiener filter's (context: about
    1 or below for a trained denoiser near the data's scale); ``time_gain`` = MSE / the lowest MSE
    when the network is told the time of another σ (``time_best``) with everything else unchanged;
    ``sigma_gain`` = the same when the whole wrapper is told another σ (``sigma_best``);
    ``mirrored``: the ratio when told the time run backwards (``OwnModel`` only)."""
    sigma: float
    ratio: float
    time_gain: float = 1.0
    time_best: float = 0.0
    sigma_gain: float | None = None
    sigma_best: float = 0.0
    mirrored: float | None = None


def _pct(gain: float | None) -> str:
    return "   -" if gain is None else f"{100 * max(gain - 1, 0):3.0f}%"


@dataclass
class Validation:
    """The check's evidence and verdict. A denoiser trained for noise level σ is the best of its
    family at σ (the minimum-MSE estimator for that noise), so when the wrapper is right, telling the
    network another noise level only makes it worse. ``ok`` (PASS) unless, at some level: telling
    the network the time of another σ lowers its error by more than ``limit`` (the claimed process
    maps σ to the wrong network time: schedule, alpha(t)/sigma(t), direction, scale); converting its
    output as if the noise were another σ does (prediction type or input scaling); or the mirrored
    time denoises better (time direction)."""
    levels: list
    limit: float = 1.2

    @property
    def sigmas(self) -> list:
        return [lv.sigma for lv in self.levels]

    @property
    def ratios(self) -> list:
        return [lv.ratio for lv in self.levels]

    @property
    def reasons(self) -> list[str]:
        out = []
        for lv in self.levels:
            if lv.time_gain > self.limit:
                out.append(f"at σ={lv.sigma:.3g} the network denoises {100 * (lv.time_gain - 1):.0f}% better when told "
                           f"the time of σ={lv.time_best:.3g}: the claimed process maps σ to the wrong network time "
                           "(noise schedule, alpha(t)/sigma(t), time direction or scale)")
            if lv.sigma_gain is not None and lv.sigma_gain > self.limit:
                out.append(f"at σ={lv.sigma:.3g} its output converted as if the noise were σ={lv.sigma_best:.3g} is "
                           f"{100 * (lv.sigma_gain - 1):.0f}% closer to the data: the prediction type or the input "
                           "scaling is wrong")
        mir = [lv.mirrored for lv in self.levels]
        if all(m is not None for m in mir) and sum(mir) * self.limit < sum(self.ratios):
            out.append(f"told the time run backwards it denoises {100 * (sum(self.ratios) / sum(mir) - 1):.0f}% "
                       "better: the time direction is reversed")
        return out

    @property
    def ok(self) -> bool:
        return not self.reasons

    def __str__(self) -> str:
        head = "PASS: the model denoises best when told the noise level it sees" if self.ok else \
            "FAIL: " + "; ".join(self.reasons)
        rows = [f"  σ={lv.sigma:<8.3g} MSE/Wiener {lv.ratio:6.2f}   better when told another time: "
                f"{_pct(lv.time_gain)}   better converted at another σ: {_pct(lv.sigma_gain)}" for lv in self.levels]
        return "\n".join([head, f"  (FAIL above {100 * (self.limit - 1):.0f}%; MSE/Wiener is context: the "
                                 "per-pixel linear filter's error is the scale, not a limit)", *rows])


def _own_samples(den, shape, n: int, seed: int, cond, steps: int = 20) -> Tensor:
    from .. import timesteps
    from ..sampling import randn, sample
    sig = timesteps.karras(steps, den.process.sigma_min, min(den.process.sigma_max, 80.0))
    return sample(den, randn((n, *shape), seed=seed) * sig[0], sig, "ddpm", cond=cond, seed=seed)


@torch.no_grad()
def check(den, data: Tensor | None = None, *, shape=None, sigmas=None, n: int = 64, seed: int = 0,
          cond=None, limit: float = 1.2) -> Validation:
    """Denoise ``data`` (or, without data, the model's own samples) at noise levels ``sigmas``
    (default: ``LEVELS`` times the data's std) and probe whether another noise level, told to the
    network's time input or (from ``WHOLE_FROM`` std up) to the whole wrapper, would have served it
    better (see ``Validation``)."""
    if data is None:
        if shape is None:
            raise ValueError("check() needs data or the sample shape (shape=(C, H, W))")
        data = _own_samples(den, tuple(shape), n, seed, cond)
    x0 = torch.as_tensor(data)[:n].float()
    if not torch.isfinite(x0).all():
        raise ValueError("the model's own samples are not finite: its time convention or prediction is wrong")
    std = float(x0.std())
    if sigmas is None:
        sigmas = [m * std for m in LEVELS]
    g = torch.Generator().manual_seed(2 ** 31 - 1 - seed)   # a stream unlike any data seed
    levels = [_level(den, x0, float(s), torch.randn(x0.shape, generator=g), cond, s >= WHOLE_FROM * std * 0.999)
              for s in sigmas]
    return Validation(levels, limit)


def _mse(den, x0, x, s: float, cond) -> float:
    d = den(x, s) if cond is None else den(x, s, cond)
    if not torch.isfinite(d).all():
        raise ValueError(f"the wrapped model returned NaN/inf at σ={s:.3g}: its time convention or prediction is wrong")
    return float(((d - x0) ** 2).mean())


def _level(den, x0: Tensor, s: float, eps: Tensor, cond, whole: bool) -> Level:
    x = x0 + s * eps
    mse = _mse(den, x0, x, s, cond)
    var = x0.var(0)
    wiener = float((var * s * s / (var + s * s)).mean())   # per-pixel linear MMSE
    lv = Level(s, mse / wiener if wiener > 0 else math.inf)
    probes = [s * math.exp(d) for d in SHIFTS]
    if whole:
        told = {p: _mse(den, x0, x, p, cond) for p in probes}
        lv.sigma_best = min(told, key=told.get)
        lv.sigma_gain = mse / max(told[lv.sigma_best], 1e-30)
    if isinstance(den, OwnModel):
        timed = {p: _mse(den.told(p / s), x0, x, s, cond) for p in probes}
        lv.time_best = min(timed, key=timed.get)
        lv.time_gain = mse / max(timed[lv.time_best], 1e-30)
        wiener_ok = wiener if wiener > 0 else math.inf
        lv.mirrored = _mse(den.mirrored(), x0, x, s, cond) / wiener_ok
    return lv


def validate(den, data: Tensor | None = None, *, quiet: bool = False, **kw) -> Validation:
    """``check``, printed (PASS or FAIL with the reason); raises ValueError on FAIL."""
    v = check(den, data, **kw)
    if not quiet:
        print(v)
    if not v.ok:
        raise ValueError(f"the wrapped model does not denoise as the claimed process predicts: {'; '.join(v.reasons)}. "
                         f"Check the time convention (time={getattr(den, 'time', '?')!r}, known: {', '.join(TIMES)}, "
                         f"or alpha=/sigma=), the process, its scale and the prediction type "
                         f"({getattr(den, 'prediction', '?')!r})")
    return v
