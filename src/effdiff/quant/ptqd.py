"""PTQD's correction of quantization noise (He et al. 2023, "PTQD: Accurate Post-Training
Quantization for Diffusion Models").

The quantized network output is modelled per step as ε_q = (1 + k) ε + b + r: a part correlated
with the full-precision output (k), a per-channel bias (b) and residual noise r of variance σ_r².
The correction ε̂ = (ε_q - b) / (1 + k) is a hook on the network's output, looked up per step
like the TDQ scales. σ_r² is recorded per step (``variance``): PTQD absorbs it into the sampler's
own noise for stochastic samplers (σ_t² -> σ_t² - σ_r²); deterministic ones only get the correction.
"""
from __future__ import annotations

import torch

from ..context import loop_context
from ..hooks import ModelHook
from .layers import step_key

Tensor = torch.Tensor


def fit(y_q: Tensor, y_fp: Tensor) -> tuple[float, Tensor, float]:
    """(k, b [C], σ_r²) with y_q - y_fp = k y_fp + b + r (least squares; b per channel, dim 1)."""
    d, y = (y_q - y_fp).double(), y_fp.double()
    k = float((d * y).sum() / (y * y).sum().clamp_min(1e-12))
    r = d - k * y
    dims = [i for i in range(r.ndim) if i != 1]
    b = r.mean(dim=dims)
    var = float((r - b.reshape(1, -1, *([1] * (r.ndim - 2)))).var())
    return k, b.float(), var


def calibrate_correction(net, calibration) -> dict:
    """Per kept calibration step: the (k, b, σ_r²) of the quantized ``net`` (hooks attached) against
    the full-precision outputs the calibration run recorded."""
    table = {}
    with torch.no_grad():
        for step, sigma, args, y_fp in calibration.net_io:
            with loop_context(calibration.num_steps, step=step) as ctx:
                ctx.sigma = torch.tensor([sigma])
                y_q = net(*args)
            k, b, var = fit(y_q, y_fp)
            if step in table:        # several batches of one step: average
                k0, b0, v0 = table[step]
                k, b, var = (k0 + k) / 2, (b0 + b) / 2, (v0 + var) / 2
            table[step] = (k, b, var)
    return table


class PTQDHook(ModelHook):
    """ε̂ = (ε_q - b) / (1 + k) on the network output, per step."""

    name = "ptqd"

    def __init__(self, table: dict, sigmas: Tensor):
        self.table, self.sigmas = table, sigmas

    def __call__(self, module, call_next, *args, **kwargs):
        y = call_next(*args, **kwargs)
        key = step_key(self.table, self.sigmas)
        if key is None:
            return y
        k, b, _ = self.table[key]
        return (y - b.to(y.dtype).reshape(1, -1, *([1] * (y.ndim - 2)))) / (1 + k)

    def variance(self, step: int) -> float:
        """σ_r² at the calibrated step nearest ``step``."""
        return self.table[min(self.table, key=lambda s: abs(s - step))][2]
