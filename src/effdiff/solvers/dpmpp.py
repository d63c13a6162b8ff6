"""DPM-Solver++ (Lu et al. 2022b): exponential integrators in the half log-SNR λ = -log σ,
data-prediction form."""
from __future__ import annotations

import math

import torch

from . import register


@register("dpmpp-2m")
def dpmpp_2m(denoiser, x, sigmas, *, noise=None, callback=None):
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2): multistep 2nd order; 1st order on the
    first step, and the last step to σ=0 returns the data prediction."""
    old_denoised, h_last, s = None, None, sigmas.tolist()
    for i in range(len(s) - 1):
        sigma, sigma_next = s[i], s[i + 1]
        denoised = denoiser(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma) - math.log(sigma_next)  # λ' - λ
            d = denoised
            if old_denoised is not None:
                r = h_last / h
                d = torch.add(denoised * (1 + 1 / (2 * r)), old_denoised, alpha=-1 / (2 * r))
            x = torch.add(x * (sigma_next / sigma), d, alpha=-math.expm1(-h))
            h_last = h
        old_denoised = denoised
        callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma, "denoised": denoised})
    return x
