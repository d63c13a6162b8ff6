"""EMA of the weights: the decay β applied after optimizer step ``step`` (0-based).

- ``{"kind": "constant", "decay": d, "warmup": True}`` (the default, ``decay`` defaulting to
  ``TrainConfig.ema_decay``): β = min(d, (1 + step)/(10 + step)), the warm-up of
  TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` used by DDPM / LDM codebases;
  ``"warmup": False`` gives a plain constant β = d.
- ``{"kind": "power", "sigma_rel": 0.05}`` (or ``"gamma": γ``): the power-function EMA of Karras
  et al. 2024 ("Analyzing and Improving the Training Dynamics of Diffusion Models", EDM2,
  eq. 2-3): β_t = (1 - 1/t)^(γ+1) with t = step + 1, whose averaging profile has relative
  width σ_rel; σ_rel = 0.05 (γ ≈ 16.97) and 0.10 (γ ≈ 6.94) are the two EMAs EDM2 tracks. Scale-free: no decay to tune against
  the run length, and the first step copies the weights (β_1 = 0).
"""
from __future__ import annotations

import math

import numpy as np

EMA_KINDS = ("constant", "power")


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """γ of the power EMA whose profile has relative standard deviation σ_rel (EDM2's
    ``std_to_exp``: the largest real root of γ³ + 7γ² + (16 - σ⁻²)γ + (12 - σ⁻²))."""
    t = sigma_rel ** -2
    return float(np.roots([1, 7, 16 - t, 12 - t]).real.max())


def gamma_to_sigma_rel(gamma: float) -> float:
    """σ_rel = sqrt((γ + 1) / ((γ + 2)² (γ + 3))) (EDM2, eq. 3)."""
    return math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)))


def validate(ema: dict, ema_decay: float) -> None:
    """Raise a ``ValueError`` naming the bad EMA option."""
    if not isinstance(ema, dict):
        raise ValueError(f"ema must be a dict like {{'kind': 'power', 'sigma_rel': 0.05}}, got {ema!r}")
    kind = ema.get("kind", "constant")
    if kind not in EMA_KINDS:
        raise ValueError(f"unknown ema kind {kind!r}; known: {', '.join(EMA_KINDS)}")
    known = {"constant": {"kind", "decay", "warmup"}, "power": {"kind", "sigma_rel", "gamma"}}[kind]
    if set(ema) - known:
        raise ValueError(f"unknown {kind} ema option(s) {sorted(set(ema) - known)}; known: {sorted(known)}")
    if kind == "constant":
        d = ema.get("decay", ema_decay)
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d < 1:
            raise ValueError(f"ema decay must be in [0, 1), got {d!r}")
        if not isinstance(ema.get("warmup", True), bool):
            raise ValueError(f"ema warmup must be true or false, got {ema['warmup']!r}")
    else:
        if "sigma_rel" in ema and "gamma" in ema:
            raise ValueError("power ema takes sigma_rel or gamma, not both")
        if "gamma" in ema:
            g = ema["gamma"]
            if isinstance(g, bool) or not isinstance(g, (int, float)) or not (math.isfinite(g) and g > 0):
                raise ValueError(f"power ema gamma must be a positive finite number, got {g!r}")
        else:
            s = ema.get("sigma_rel", 0.05)
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s < gamma_to_sigma_rel(1e-9):
                raise ValueError(f"power ema sigma_rel must be in (0, {gamma_to_sigma_rel(1e-9):.3f}), got {s!r}")


def decay_fn(ema: dict, ema_decay: float):
    """``beta(step) -> float``: the EMA decay applied after optimizer step ``step`` (0-based)."""
    validate(ema, ema_decay)
    if ema.get("kind", "constant") == "constant":
        d, warm = ema.get("decay", ema_decay), ema.get("warmup", True)
        return (lambda step: min(d, (1 + step) / (10 + step))) if warm else (lambda step: d)
    gamma = ema["gamma"] if "gamma" in ema else sigma_rel_to_gamma(ema.get("sigma_rel", 0.05))
    return lambda step: (1 - 1 / (step + 1)) ** (gamma + 1)
