"""Fake-quantized Linear / Conv2d layers as removable hooks on any ``nn.Module`` (ours, diffusers', a user's).

A ``QuantHook`` on a layer fake-quantizes its input (``ActQuant``) and runs the layer with a
fake-quantized copy of its weight; the layer's own parameters are never written, so removing the
handle leaves the exact model (bit-identical outputs). Activation scales are static (calibrated),
per timestep (TDQ-style: the table is looked up with the loop context's ``step``, or the nearest
calibrated σ under another schedule) or dynamic per token.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.stateless import _reparametrize_module

from ..context import current_context
from ..hooks import Handle, ModelHook, attach
from ..sites import network
from . import observers
from .quantizer import QuantSpec, expand_segments, fake_quant, qparams, rows, segments, token_range

Tensor = torch.Tensor
QUANTIZABLE = (nn.Linear, nn.Conv2d)


def quant_layers(model, exclude: Sequence[str] = ()) -> dict[str, nn.Module]:
    """Every Linear / Conv2d of ``model``'s network by qualified name, minus names containing an ``exclude`` entry."""
    return {n: m for n, m in network(model).named_modules()
            if isinstance(m, QUANTIZABLE) and not any(e in n for e in exclude)}


def channel_dim(layer: nn.Module) -> int:
    """Where a layer's input keeps its channels: 1 for convolutions, -1 for linears."""
    return 1 if isinstance(layer, nn.Conv2d) else -1


def weight_qparams(w: Tensor, spec: QuantSpec, observer: str = "minmax", split: int | None = None):
    """(scale, zero) of weight w [O, I, ...] broadcastable against it: per tensor, or per output channel
    and input segment (per-channel, per-group, or Q-Diffusion's split at input channel ``split``)."""
    obs = observers.get(observer)
    if spec.granularity == "tensor" and split is None:
        lo, hi = obs(w.reshape(1, -1), spec)
        return qparams(lo, hi, spec)
    bounds = segments(w.shape[1], spec, split)
    per = [obs(w[:, a:b].reshape(w.shape[0], -1), spec) for a, b in zip(bounds[:-1], bounds[1:])]
    lo, hi = torch.stack([p[0] for p in per], 1), torch.stack([p[1] for p in per], 1)      # [O, S]
    s, z = qparams(lo, hi, spec)
    shape = (w.shape[0], w.shape[1]) + (1,) * (w.ndim - 2)
    return expand_segments(s, bounds).reshape(shape), expand_segments(z, bounds).reshape(shape)


def quantize_weight(w: Tensor, spec: QuantSpec, observer: str = "minmax", split: int | None = None) -> Tensor:
    """Round-to-nearest fake-quantized copy of w."""
    s, z = weight_qparams(w.detach(), spec, observer, split)
    return fake_quant(w.detach(), s, z, spec)


class ActQuant:
    """Fake-quantizes a layer input: static scales per key (None = every step; an int = that step),
    per channel segment (``bounds``), or dynamic per token (``spec.granularity == "token"``)."""

    def __init__(self, spec: QuantSpec, dim: int, table: dict | None = None, bounds: tuple[int, ...] | None = None,
                 sigmas: Tensor | None = None):
        self.spec, self.dim, self.bounds = spec, dim, bounds
        self.table = {k: self._shape(*v) for k, v in (table or {}).items()}
        self.sigmas = sigmas          # calibrated σ per step: the table's schedule

    def _shape(self, s: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.bounds is None:
            return s.reshape(()), z.reshape(())
        s, z = expand_segments(s, self.bounds), expand_segments(z, self.bounds)
        shape = [-1] + [1] * (-self.dim - 1) if self.dim < 0 else [-1, 1, 1]
        return s.reshape(shape), z.reshape(shape)

    def key(self):
        """The calibrated step whose scales apply now (None: the all-step scales)."""
        return step_key(self.table, self.sigmas)

    def __call__(self, x: Tensor) -> Tensor:
        if self.spec.granularity == "token":
            return fake_quant(x, *qparams(*token_range(x, self.dim), self.spec), self.spec)
        s, z = self.table[self.key()]
        return fake_quant(x, s.to(x.dtype), z.to(x.dtype), self.spec)


def step_key(table: dict, sigmas: Tensor | None):
    """The key of ``table`` for the evaluation in progress: the loop context's ``step`` when the run
    uses the calibrated schedule (first stage of the step), else the calibrated step of nearest σ
    (log scale); None (the all-step entry) outside a sampling loop or for a table without steps."""
    ctx = current_context()
    steps = [k for k in table if k is not None]
    if ctx is None or not steps or sigmas is None:
        return None
    if ctx.num_steps == len(sigmas) - 1 and ctx.stage == 0 and ctx.step in table:
        return ctx.step
    if ctx.sigma is None:
        return None
    s = max(float(ctx.sigma.reshape(-1)[0]), 1e-8)
    logs = torch.tensor([max(float(sigmas[k]), 1e-8) for k in steps]).log()
    return steps[int((logs - torch.tensor(s).log()).abs().argmin())]


def _direct(layer: nn.Module) -> bool:
    """A layer whose forward is exactly the library op on its first argument."""
    from ..models.unet import Conv
    return type(layer).forward in (nn.Linear.forward, nn.Conv2d.forward, Conv.forward)


def run_with(layer: nn.Module, x: Tensor, w: Tensor) -> Tensor:
    """A plain Linear / Conv2d (``_direct``) applied to x with weight ``w`` in place of its own."""
    if isinstance(layer, nn.Conv2d):
        return layer._conv_forward(x, w, layer.bias)
    return F.linear(x, w, layer.bias)


class QuantHook(ModelHook):
    """Runs the layer on ``act(x)`` with ``weight`` in place of its own (both optional)."""

    name = "quant"

    def __init__(self, weight: Tensor | None = None, act: ActQuant | None = None):
        self.weight, self.act = weight, act

    def __call__(self, module, call_next, x, *args, **kwargs):
        if self.act is not None:
            x = self.act(x)
        if self.weight is None:
            return call_next(x, *args, **kwargs)
        w = self.weight.to(x.dtype)
        if _direct(module):
            return run_with(module, x, w)
        with _reparametrize_module(module, {"weight": w}):
            return call_next(x, *args, **kwargs)


def attach_quant(model, hooks: dict[str, QuantHook], name: str = "quant", stats=None) -> Handle:
    """Attach one ``QuantHook`` per named layer of ``model``'s network (all-or-nothing); the handle removes them."""
    mods = dict(network(model).named_modules())
    missing = [n for n in hooks if n not in mods]
    if missing:
        raise KeyError(f"no layer named {missing[0]!r} in {type(network(model)).__name__}")
    return attach(name, [(mods[n], h) for n, h in hooks.items()], stats=stats)


def apply_weight_quant(model, spec: QuantSpec, observer: str = "minmax", exclude: Sequence[str] = (),
                       act: QuantSpec | None = None) -> Handle:
    """Weight-only (or with ``act`` dynamic per-token activation) fake quantization of every layer; no calibration."""
    if act is not None and act.granularity != "token":
        raise ValueError("without calibration only dynamic per-token activation quantization is possible: "
                         "use granularity='token' or the PTQ techniques")
    hooks = {n: QuantHook(quantize_weight(m.weight, spec, observer),
                          ActQuant(act, channel_dim(m)) if act is not None else None)
             for n, m in quant_layers(model, exclude).items()}
    return attach_quant(model, hooks)
