"""SVDQuant (Li et al. 2024, "SVDQuant: Absorbing Outliers by Low-Rank Components for 4-Bit Diffusion
Models") as the Technique ``svdquant``: per layer,

    λ_j = max|X_j|^α / max|W_:,j|^(1-α)          smoothing: activation outliers migrate into the weight
    X̂ = X diag(λ)^-1,  Ŵ = Ŵ diag(λ)            X̂ Ŵᵀ = X Wᵀ exactly (up to float rounding)
    Ŵ = L1 L2 + R                               L1 L2: the rank-r truncated SVD of Ŵ, kept in 16 bits
    y = X̂ (L1 L2)ᵀ + Q(X̂) Q(R)ᵀ + b            R: 4-bit per group; Q(X̂): 8-bit (or 4-bit) activations

Linear layers and Conv2d (groups = 1): a convolution's weight is seen as [out, in·k·k]; its low-rank
branch runs as conv(in -> r, k, the layer's stride/padding) then a 1x1 conv(r -> out). Layers whose
forward is not the plain library op (a subclass with its own forward) stay in full precision and are
counted in ``stats.skipped``.

max|X_j| comes from the full-precision sampling trajectory (``calibration.calibrate`` with one segment
per input channel); activation scales of X̂ are min-max, per step (TDQ-style, like ``ptq``) or dynamic
per token; a layer reading the network's own input is quantized per token (as in ``ptq``). The
low-rank factors are rounded to bfloat16 (``lowrank_dtype``; "float32" keeps them exact) and the
residual is computed *after* that rounding, so it absorbs the rounding error. The simulation holds
float32 tensors; ``stats.packed_bytes`` counts what a packed store holds: the residual at ``w_bits``,
one float32 scale per output channel and group, the factors and λ at 16 bits.

    t = techniques.get("svdquant")
    cfg = t.prepare(den, SVDQuantConfig(w_bits=4, a_bits=8, rank=8), techniques.Run(x_T, sigmas, "ddim", labels))
    with t.apply(den, cfg) as h:           # hooks only: remove() restores the exact model
        x = ed.sample(den, x_T, sigmas, "ddim", cond=labels)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..hooks import ModelHook
from ..sites import network
from ..techniques import Run, Technique, register
from .calibration import SCHEMES, calibrate
from .layers import ActQuant, _direct, attach_quant, quant_layers, quantize_weight, run_with
from .ptq import check_quantizable
from .quantizer import QuantSpec, qparams
from .stats import QuantStats

Tensor = torch.Tensor
LOWRANK_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class SVDQuantConfig:
    """``w_bits``: residual bits (None: residual kept in float32), per group of ``group_size`` input
    channels (None: per output channel; a layer the size does not divide falls back to per channel);
    ``a_bits``: activation bits after smoothing (None: not quantized); ``a_granularity``: "tensor"
    (calibrated min-max, one scale per step with ``per_step``) or "token" (dynamic); ``rank``: of the
    low-rank branch (clipped to the layer's); ``alpha``: smoothing migration strength (0: none);
    ``lowrank_dtype``: storage of the factors; ``exclude``: layer-name substrings left in full
    precision; ``state``: filled by ``prepare``."""
    w_bits: int | None = 4
    a_bits: int | None = 8
    rank: int = 8
    alpha: float = 0.5
    group_size: int | None = 32
    w_observer: str = "mse"
    a_granularity: str = "tensor"
    a_symmetric: bool = False
    per_step: bool = True
    scheme: str = "trajectory"
    lowrank_dtype: str = "bfloat16"
    exclude: tuple[str, ...] = ()
    state: dict | None = None

    def __post_init__(self):
        _ = (self.w_spec, self.a_spec)               # validates the bit-widths and granularities
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 0:
            raise ValueError(f"rank must be a non-negative integer, got {self.rank!r}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha!r}")
        if self.a_granularity not in ("tensor", "token"):
            raise ValueError(f"activations are quantized per 'tensor' or per 'token', got {self.a_granularity!r}")
        if self.lowrank_dtype not in LOWRANK_DTYPES:
            raise ValueError(f"unknown lowrank_dtype {self.lowrank_dtype!r}; known: {', '.join(LOWRANK_DTYPES)}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown calibration scheme {self.scheme!r}; known: {', '.join(SCHEMES)}")

    @property
    def w_spec(self) -> QuantSpec | None:
        if self.w_bits is None:
            return None
        if self.group_size is None:
            return QuantSpec(self.w_bits, True, "channel")
        return QuantSpec(self.w_bits, True, "group", self.group_size)

    @property
    def a_spec(self) -> QuantSpec | None:
        return None if self.a_bits is None else QuantSpec(self.a_bits, self.a_symmetric, self.a_granularity)


def smoothing(weight: Tensor, x_absmax: Tensor, alpha: float, eps: float = 1e-5) -> Tensor:
    """λ [I] = max|X_j|^α / max|W_:,j|^(1-α) (SmoothQuant's factor; 1 where a channel never fired)."""
    w_absmax = weight.detach().abs().transpose(0, 1).reshape(weight.shape[1], -1).amax(1)
    lam = x_absmax.clamp_min(eps).pow(alpha) / w_absmax.clamp_min(eps).pow(1 - alpha)
    return torch.where(x_absmax > 0, lam, torch.ones_like(lam)).float()


def decompose(w_hat: Tensor, rank: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, Tensor]:
    """(down [r, I, ...], up [O, r], residual like w_hat): down·up is the rank-r truncated SVD of
    w_hat [O, I, ...] seen as [O, I·k·k], rounded to ``dtype``; residual = w_hat - up @ down."""
    m = w_hat.detach().reshape(w_hat.shape[0], -1).double()
    r = min(rank, *m.shape)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    root = s[:r].sqrt()
    up = (u[:, :r] * root).to(dtype).float()                         # L1 [O, r]
    down = (root[:, None] * vh[:r]).to(dtype).float()                 # L2 [r, I·k·k]
    residual = (m - up.double() @ down.double()).float().reshape(w_hat.shape)
    return down.reshape(r, *w_hat.shape[1:]), up, residual


def _inv_shape(layer: nn.Module, inv: Tensor) -> Tensor:
    return inv.reshape(-1, 1, 1) if isinstance(layer, nn.Conv2d) else inv


class SVDQuantHook(ModelHook):
    """y = X̂ (L1 L2)ᵀ + Q(X̂) Q(R)ᵀ + b with X̂ = X / λ; ``act`` None: X̂ unquantized."""

    name = "quant"

    def __init__(self, inv_lambda: Tensor, down: Tensor, up: Tensor, residual: Tensor, act: ActQuant | None = None):
        self.inv_lambda, self.down, self.up, self.residual, self.act = inv_lambda, down, up, residual, act

    def lowrank(self, module, x_hat: Tensor) -> Tensor:
        """The 16-bit branch X̂ (L1 L2)ᵀ (zero for rank 0)."""
        if self.down.shape[0] == 0:
            return 0
        if isinstance(module, nn.Conv2d):
            return F.conv2d(module._conv_forward(x_hat, self.down, None), self.up[:, :, None, None])
        return F.linear(F.linear(x_hat, self.down), self.up)

    def __call__(self, module, call_next, x, *args, **kwargs):
        x_hat = x * _inv_shape(module, self.inv_lambda).to(x.dtype)
        xq = self.act(x_hat) if self.act is not None else x_hat
        return run_with(module, xq, self.residual) + self.lowrank(module, x_hat)


def _supported(layer: nn.Module) -> bool:
    return _direct(layer) and getattr(layer, "groups", 1) == 1


def _act_table(rec, lam: Tensor, spec: QuantSpec, steps: list[int], per_step: bool) -> dict:
    """Min-max (scale, zero) of X̂ = X / λ per key (None: all steps), from the per-channel ranges."""
    def one(keys):
        lo, hi = rec.range(keys)                    # [I] per channel; λ > 0 keeps the order
        return qparams((lo / lam).min(), (hi / lam).max(), spec)
    table = {None: one(steps)}
    if per_step:
        table.update({s: one([s]) for s in steps if s in rec.lo})
    return table


def _layer_state(layer: nn.Module, rec, cfg: SVDQuantConfig, cal) -> dict:
    lo, hi = rec.range(cal.steps)
    lam = smoothing(layer.weight, torch.maximum(lo.abs(), hi.abs()), cfg.alpha) if cfg.alpha > 0 \
        else torch.ones(layer.weight.shape[1])
    w_hat = layer.weight.detach().float() * lam.reshape(1, -1, *([1] * (layer.weight.ndim - 2)))
    down, up, residual = decompose(w_hat, cfg.rank, LOWRANK_DTYPES[cfg.lowrank_dtype])
    w_spec, a_spec = cfg.w_spec, cfg.a_spec
    if w_spec is not None:
        residual = quantize_weight(residual, w_spec, cfg.w_observer)
    act = None
    if a_spec is not None and (rec.is_input or a_spec.granularity == "token"):   # the noisy image: never clipped
        a_spec = dataclasses.replace(a_spec, granularity="token")
    elif a_spec is not None:
        act = _act_table(rec, lam, a_spec, cal.steps, cfg.per_step)
    return {"inv_lambda": 1 / lam, "down": down, "up": up, "residual": residual, "act": act, "a_spec": a_spec,
            "dim": rec.dim, "w_spec": w_spec}


def _hook(st: dict, sigmas) -> SVDQuantHook:
    act = None if st["a_spec"] is None else ActQuant(st["a_spec"], st["dim"], st["act"], None, sigmas)
    return SVDQuantHook(st["inv_lambda"], st["down"], st["up"], st["residual"], act)


def prepare_svdquant(denoiser, config: SVDQuantConfig, run: Run) -> SVDQuantConfig:
    """Calibrate per-channel input ranges on ``run``, smooth, decompose and quantize every supported
    layer; return ``config`` with its ``state``."""
    layers = {n: m for n, m in quant_layers(denoiser, config.exclude).items() if _supported(m)}
    if not layers:
        raise TypeError(f"no plain Linear/Conv2d layers to quantize in {type(network(denoiser)).__name__}")
    per_channel = {n: tuple(range(m.weight.shape[1] + 1)) for n, m in layers.items()}
    cal = calibrate(denoiser, run, layers, per_channel, config.scheme, keep=0)
    state = {"layers": {n: _layer_state(m, cal.layers[n], config, cal) for n, m in layers.items()},
             "sigmas": cal.sigmas, "skipped": sorted(set(quant_layers(denoiser, config.exclude)) - set(layers))}
    return dataclasses.replace(config, state=state)


@dataclass
class SVDQuantStats(QuantStats):
    """``QuantStats`` plus ``lowrank_bytes`` (the 16-bit factors and λ, inside ``packed_bytes``) and
    ``skipped`` (quantizable layers left in full precision: not plain Linear/Conv2d)."""
    lowrank_bytes: int = 0
    skipped: int = 0

    @classmethod
    def of(cls, denoiser, state: dict) -> "SVDQuantStats":
        mods = dict(network(denoiser).named_modules())
        fp = packed = low = 0
        for n, st in state["layers"].items():
            w, spec = mods[n].weight, st["w_spec"]
            fp += 4 * w.numel()
            if spec is None:
                packed += 4 * w.numel()
            else:
                groups = w.shape[1] // spec.group_size if spec.granularity == "group" and not w.shape[1] % spec.group_size else 1
                packed += (w.numel() * spec.bits + 7) // 8 + 4 * w.shape[0] * groups
            low += 2 * (st["down"].numel() + st["up"].numel() + st["inv_lambda"].numel())
        return cls(layers=len(state["layers"]), fp32_bytes=fp, packed_bytes=packed + low, lowrank_bytes=low,
                   skipped=len(state["skipped"]))


def apply_svdquant(denoiser, config: SVDQuantConfig):
    """Attach the prepared SVDQuant layers (``config.state``); the handle removes them (exact model back)."""
    hooks = {n: _hook(st, config.state["sigmas"]) for n, st in config.state["layers"].items()}
    return attach_quant(denoiser, hooks, stats=SVDQuantStats.of(denoiser, config.state))


register(Technique("svdquant", "quant", SVDQuantConfig, apply_svdquant, check_quantizable, needs=("state",),
                   prepare_fn=lambda d, c, r, **kw: prepare_svdquant(d, c, r),
                   eager=lambda n: SVDQuantConfig(w_bits=4, a_bits=8),
                   paper="SVDQuant (Li et al. 2024)"))
