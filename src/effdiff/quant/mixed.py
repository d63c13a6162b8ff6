"""Mixed precision by per-layer sensitivity (as in HAWQ-style and PTQ-for-diffusion studies):
quantize one layer at a time, measure the relative error it causes in the network output on the
calibration steps, and keep the most sensitive fraction of layers at higher precision."""
from __future__ import annotations

from typing import Callable

import torch

from .calibration import at_step
from ..hooks import attach


def output_error(net, calibration) -> float:
    """Mean over the kept steps of ||net(args) - y_fp||² / ||y_fp||² with the hooks now attached."""
    errs = []
    with torch.no_grad():
        for step, sigma, args, y_fp in calibration.net_io:
            with at_step(calibration.num_steps, step, sigma):
                y = net(*args)
            errs.append(float((y - y_fp).pow(2).sum() / y_fp.pow(2).sum().clamp_min(1e-12)))
    return sum(errs) / max(1, len(errs))


def sensitivity(net, layers: dict, hook_for: Callable, calibration) -> dict[str, float]:
    """Layer name -> output error with only that layer quantized (``hook_for(name)`` builds its hook)."""
    out = {}
    for name, layer in layers.items():
        with attach("quant-sensitivity", [(layer, hook_for(name))]):
            out[name] = output_error(net, calibration)
    return out


def most_sensitive(scores: dict[str, float], fraction: float) -> set[str]:
    """The ``fraction`` of layers with the largest sensitivity (rounded up when fraction > 0)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"mixed_fraction must lie in [0, 1], got {fraction}")
    k = int(-(-fraction * len(scores) // 1))
    return set(sorted(scores, key=scores.get, reverse=True)[:k])
