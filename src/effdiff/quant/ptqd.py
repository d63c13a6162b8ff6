"""PTQD's correction of quantization noise (He et al. 2023, "PTQD: Accurate Post-Training
Quantization for Diffusion Models").

The quantized network output is modelled per step as ε_q = (1 + k) ε + b + r: a part correlated
with the full-precision output (k), a per-channel bias (b) and residual noise r of variance σ_r².
The correction ε̂ = (ε_q - b) / (1 + k) is a hook on the network's output, looked up per step
like the TDQ scales. σ_r² is recorded per step (``variance``): PTQD absorbs it into the sampler's
own noise for stochastic samplers: the hook publishes the residual's variance in x0 units
(``gain(σ)² σ_r²``, ``gain`` = ∂x0/∂(network output) of the denoiser's parameterization) in the
loop context's ``state[X0_NOISE_VAR]``, and the ancestral solvers (ddim with η > 0, ddpm,
euler-ancestral) lower the noise they inject by the quantization noise the step already carries
(σ_up² -> max(σ_up² - (1 - σ_down/σ)² v, 0)); deterministic solvers only get the correction.
"""
from __future__ import annotations

import torch

from ..context import current_context
from ..hooks import ModelHook
from .calibration import at_step
from .layers import step_key

Tensor = torch.Tensor
X0_NOISE_VAR = "x0_noise_var"      # loop-context state key the ancestral solvers read


def x0_gain(denoiser, sigma: float) -> float:
    """∂x0/∂F at σ: how much one unit of network output moves the denoised estimate."""
    if hasattr(denoiser, "preconditioning"):                          # EDM: D = c_skip x + c_out F
        return abs(float(denoiser.preconditioning(torch.tensor([sigma], dtype=torch.float64))[1]))
    from ..denoisers import PREDICTIONS
    a, b, da, db, _ = denoiser.scalar_coefficients(float(sigma))
    f = PREDICTIONS[denoiser.prediction]
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    return abs(float(f(one, zero, zero, a, b, da, db, float(sigma)) - f(zero, zero, zero, a, b, da, db, float(sigma))))


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
            with at_step(calibration.num_steps, step, sigma):
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

    def __init__(self, table: dict, sigmas: Tensor, gains: dict | None = None):
        self.table, self.sigmas, self.gains = table, sigmas, gains or {}

    def __call__(self, module, call_next, *args, **kwargs):
        y = call_next(*args, **kwargs)
        key = step_key(self.table, self.sigmas)
        if key is None:
            return y
        k, b, var = self.table[key]
        ctx = current_context()
        if ctx is not None and key in self.gains:    # residual variance after the correction, in x0 units
            ctx.state[X0_NOISE_VAR] = (self.gains[key] / (1 + k)) ** 2 * var
        return (y - b.to(y.dtype).reshape(1, -1, *([1] * (y.ndim - 2)))) / (1 + k)

    def variance(self, step: int) -> float:
        """σ_r² at the calibrated step nearest ``step``."""
        return self.table[min(self.table, key=lambda s: abs(s - step))][2]
