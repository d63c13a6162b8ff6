"""A real int8 execution path on CPU, measured rather than simulated.

Linear layers hold int8 weights (per output channel, symmetric) and run with integer kernels:

- ``int_mm``: activations quantized per token to int8 at run time, ``torch._int_mm`` (int8 x int8
  -> int32), rescaled by the token and channel scales;
- ``fbgemm``: PyTorch's dynamic quantized linear (``quantized.linear_dynamic``: int8 weights,
  activations quantized per tensor at run time, fbgemm kernels);
- ``dequant``: weight-only int8, dequantized to float32 at each call (memory saved, float compute).

Convolutions use ``dequant`` — the documented fallback: PyTorch's int8 convolutions need static
quantized-tensor inputs, and an im2col + ``torch._int_mm`` convolution is slower than float32 on
CPUs without VNNI. ``backend="auto"`` times every candidate on the layer's real input
(``prepare`` on a sampling run) and keeps the fastest, float32 included: a layer where no int8 path
wins stays in float32, and the handle's stats say how many did.
Bytes actually held (``held_bytes``) count int8 weights, scales and biases.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..hooks import Handle, Stats
from ..sites import network, replace
from ..techniques import Run, Technique, register
from .quantizer import QuantSpec, qparams, quantize

LINEAR_BACKENDS = ("int_mm", "fbgemm", "dequant")
SPEC = QuantSpec(8, True, "channel")


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 codes and float32 scales [O] of w [O, ...], symmetric per output channel."""
    flat = w.detach().reshape(w.shape[0], -1)
    s, z = qparams(flat.amin(1), flat.amax(1), SPEC)
    return quantize(w.detach(), s.reshape(-1, *([1] * (w.ndim - 1))), 0, SPEC), s


class Int8Linear(nn.Module):
    """y = x Wᵀ + b with W stored as int8 codes [O, I] and scales [O]; ``backend`` picks the kernel."""

    def __init__(self, layer: nn.Linear, backend: str = "fbgemm"):
        super().__init__()
        if backend not in LINEAR_BACKENDS:
            raise ValueError(f"unknown int8 linear backend {backend!r}; known: {', '.join(LINEAR_BACKENDS)}")
        q, s = quantize_rows(layer.weight)
        self.register_buffer("qweight", q)
        self.register_buffer("scale", s)
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().clone())
        self.in_features, self.out_features, self.backend = layer.in_features, layer.out_features, backend
        self._packed = self._pack() if backend == "fbgemm" else None

    def _pack(self):
        with warnings.catch_warnings():      # quantized tensors are deprecated; the fbgemm op still takes one
            warnings.simplefilter("ignore")
            qw = torch.quantize_per_channel(self.weight, self.scale.double(), torch.zeros_like(self.scale, dtype=torch.long),
                                            0, torch.qint8)
        return torch.ops.quantized.linear_prepack(qw, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).float()
        if self.backend == "fbgemm":
            y = torch.ops.quantized.linear_dynamic(x2, self._packed, True)   # 7-bit activations: no int16 saturation
        elif self.backend == "int_mm":
            xs = x2.abs().amax(1, keepdim=True).clamp_min(1e-8) / 127          # per-token scale [M, 1]
            xq = torch.round(x2 / xs).clamp(-127, 127).to(torch.int8)
            y = torch._int_mm(xq, self.qweight.t()).float() * xs * self.scale
            y = y if self.bias is None else y + self.bias
        else:
            y = F.linear(x2, self.weight, self.bias)
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float32 weight (computed on access; code reading ``layer.weight.dtype`` keeps working)."""
        return self.qweight.float() * self.scale.reshape(-1, *([1] * (self.qweight.ndim - 1)))

    def nbytes(self) -> int:
        return self.qweight.numel() + 4 * self.scale.numel() + (0 if self.bias is None else 4 * self.bias.numel())


class Int8Conv2d(nn.Module):
    """Conv2d with int8 weight codes and per-output-channel scales, dequantized at each call."""

    def __init__(self, layer: nn.Conv2d):
        super().__init__()
        q, s = quantize_rows(layer.weight)
        self.register_buffer("qweight", q)
        self.register_buffer("scale", s)
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().clone())
        self.stride, self.padding, self.dilation, self.groups = layer.stride, layer.padding, layer.dilation, layer.groups
        self.backend = "dequant"
        if layer.padding_mode != "zeros":
            raise ValueError(f"Int8Conv2d supports zero padding only, got {layer.padding_mode!r}")

    def forward(self, x: torch.Tensor, *unused) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), self.bias, self.stride, self.padding, self.dilation, self.groups)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float32 weight (computed on access; code reading ``layer.weight.dtype`` keeps working)."""
        return self.qweight.float() * self.scale.reshape(-1, *([1] * (self.qweight.ndim - 1)))

    def nbytes(self) -> int:
        return self.qweight.numel() + 4 * self.scale.numel() + (0 if self.bias is None else 4 * self.bias.numel())


def held_bytes(model: nn.Module) -> int:
    """Bytes of the parameters and buffers ``model``'s network holds (int8 codes count one byte)."""
    net = network(model)
    seen, total = set(), 0
    for t in list(net.parameters()) + list(net.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


@dataclass
class Int8Stats(Stats):
    """Layers converted per backend and bytes held by the network before / after."""
    int_mm: int = 0
    fbgemm: int = 0
    dequant: int = 0
    fp32: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


@dataclass
class Int8Config:
    """``backend``: "auto" (the per-layer choice that ``prepare`` timed; float32 where no int8 path
    wins), or one of int_mm / fbgemm / dequant for every Linear; ``conv``: convert convolutions
    (weight-only fallback); ``exclude``: layer-name substrings kept in float32; ``choice``: filled by prepare."""
    backend: str = "auto"
    conv: bool = True
    exclude: tuple[str, ...] = ()
    choice: dict | None = field(default=None, repr=False)


def _candidates(layer: nn.Module) -> list[str]:
    return list(LINEAR_BACKENDS) + ["fp32"] if isinstance(layer, nn.Linear) else ["dequant", "fp32"]


def _build(layer: nn.Module, backend: str) -> nn.Module:
    if backend == "fp32":
        return layer
    return Int8Linear(layer, backend) if isinstance(layer, nn.Linear) else Int8Conv2d(layer)


def _time(fn, x, repeats: int = 5) -> float:
    with torch.no_grad():
        fn(x)
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn(x)
    return (time.perf_counter() - t0) / repeats


def layers_of(model, config: Int8Config) -> dict[str, nn.Module]:
    kinds = (nn.Linear, nn.Conv2d) if config.conv else (nn.Linear,)
    return {n: m for n, m in network(model).named_modules()
            if isinstance(m, kinds) and getattr(m, "padding_mode", "zeros") == "zeros" and not any(e in n for e in config.exclude)}


def prepare_int8(denoiser, config: Int8Config, run: Run, **_) -> Int8Config:
    """Time each candidate kernel on each layer's input from one evaluation at the run's first σ."""
    import dataclasses
    from ..hooks import ModelHook, attach
    inputs: dict = {}

    class Grab(ModelHook):
        def __init__(self, name):
            self.name = name

        def __call__(self, module, call_next, x, *a, **k):
            inputs[self.name] = x.detach()
            return call_next(x, *a, **k)

    layers = layers_of(denoiser, config)
    with attach("int8-probe", [(m, Grab(n)) for n, m in layers.items()]), torch.no_grad():
        denoiser(run.x, torch.as_tensor(run.sigmas)[0].float().expand(len(run.x)), run.cond)
    choice = {}
    for n, m in layers.items():
        times = {b: _time(_build(m, b), inputs[n]) for b in _candidates(m)}
        choice[n] = min(times, key=times.get)
    return dataclasses.replace(config, choice=choice)


def apply_int8(denoiser, config: Int8Config | None = None) -> Handle:
    """Replace Linear / Conv2d layers by int8 ones in place; ``handle.remove()`` puts the originals back
    (the handle keeps them meanwhile: ``bytes_after`` counts what the converted network holds)."""
    config = config or Int8Config()
    net = network(denoiser)
    layers = layers_of(denoiser, config)
    stats = Int8Stats(bytes_before=held_bytes(net))
    originals = []
    try:
        for n, m in layers.items():
            b = (config.choice or {}).get(n, "fp32") if config.backend == "auto" else (
                config.backend if isinstance(m, nn.Linear) else "dequant")
            stats.add(**{b: 1})
            if b != "fp32":
                originals.append((n, replace(net, n, _build(m, b))))
    except BaseException:
        for n, old in reversed(originals):
            replace(net, n, old)
        raise
    stats.bytes_after = held_bytes(net)

    def restore():
        for n, old in reversed(originals):
            replace(net, n, old)
    return Handle("int8", [], stats=stats, on_remove=restore)


def _check(denoiser) -> str | None:
    return None if layers_of(denoiser, Int8Config()) else "it has no Linear/Conv2d layers"


register(Technique("int8", "quant", Int8Config, apply_int8, _check, prepare_fn=prepare_int8,
                   eager=lambda n: Int8Config(backend="fbgemm"),
                   paper="int8 weights and activations on integer CPU kernels (torch._int_mm, fbgemm)"))
