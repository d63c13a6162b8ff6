"""DPM-Solver++ (Lu et al. 2022b): exponential integrators in the half log-SNR λ = -log σ,
data-prediction form."""
from __future__ import annotations

import math

from . import register


@register("dpmpp-2m")
def dpmpp_2m(denoiser, x, sigmas, *, noise=None, callback=None):
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2): multistep 2nd order; 1st order on the
    first step, and the last step to σ=0 returns the data prediction."""
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma) - math.log(sigma_next)  # λ' - λ
            d = denoised
            if old_denoised is not None:
                r = h_last / h
                d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_next / sigma) * x - math.expm1(-h) * d
            h_last = h
        old_denoised = denoised
        callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma, "denoised": denoised})
    return x
