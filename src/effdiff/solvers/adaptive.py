"""Adaptive step-size solvers: an embedded lower/higher-order pair estimates the local error,
steps are accepted when the scaled error E ≤ 1, and h (in λ = -log σ) is updated by
h ← θ h E^{-e} (optionally a PID controller on the last errors).

These solvers choose their own grid: of the given schedule they use only sigmas[0] (start),
sigmas[-2] (the σ_min where the adaptive solve ends) and the final 0 (one more evaluation
returns the data prediction D(x, σ_min)). ``ed.sample`` counts NFE as usual (rejected
attempts included); the callback is called once per accepted step with increasing i, plus
once for the final jump to 0, and its dict carries the running "accepted" / "rejected" counts
and "sigma_next". The loop context's num_steps (len(sigmas) - 1) is therefore wrong for
these solvers, and so is SampleResult.steps' meaning of "schedule steps": it counts accepted
steps + 1. The error is the max over the batch, so the grid (and the samples) depend on the
whole batch, not only on each sample's seed.
"""
from __future__ import annotations

import math

import torch

from . import register
from .dpm_solver import sub_sigma, check_options, exp_step, model_output, singlestep_update


def error_norm(x_hi, x_lo, x_prev, atol: float, rtol: float) -> float:
    """E = max over the batch of RMS(|x_hi - x_lo| / max(atol, rtol max(|x_lo|, |x_prev|)))
    (Lu et al. 2022, App. C; Jolicoeur-Martineau et al. 2021, Alg. 1: mixed abs/rel tolerance)."""
    scale = torch.maximum(x_lo.abs(), x_prev.abs()).mul(rtol).clamp_min(atol)
    return float(((x_hi - x_lo) / scale).pow(2).reshape(x_hi.shape[0], -1).mean(1).sqrt().max())


def step_factor(errs: list[float], exponent: float, theta: float, pid: tuple[float, float, float]) -> float:
    """θ E_n^{-β1 e} E_{n-1}^{-β2 e} E_{n-2}^{-β3 e} with (β1, β2, β3) from (p, i, d) coefficients
    as in Söderlind 2003 / diffrax's PIDController; pid = (0, 1, 0) is the classic θ h E^{-e}."""
    p, i, d = pid
    betas = (p + i + d, -(p + 2 * d), d)
    f = theta
    for beta, e in zip(betas, errs):
        if beta:
            f *= max(e, 1e-10) ** (-beta * exponent)
    return f


def _check(atol, rtol, theta, h_init, pid):
    if atol <= 0 or rtol < 0:
        raise ValueError(f"need atol > 0 and rtol >= 0, got atol={atol}, rtol={rtol}")
    if not 0 < theta <= 1:
        raise ValueError(f"theta (safety factor) must be in (0, 1], got {theta}")
    if h_init <= 0:
        raise ValueError(f"h_init must be > 0, got {h_init}")
    if len(pid) != 3 or not all(isinstance(c, (int, float)) for c in pid):
        raise ValueError(f"pid must be (pcoeff, icoeff, dcoeff) numbers, got {pid!r}")


def adaptive_solve(loop, x, pair, *, exponent: float, atol: float, rtol: float,
                   theta: float, h_init: float, pid=(0.0, 1.0, 0.0), max_steps: int = 10_000):
    """The shared accept/reject loop in λ from sigmas[0] to sigmas[-2], then x = D(x, σ_min).
    ``pair(x, σ, σ') -> (x_lower, x_higher, denoised)``; x_higher is kept on acceptance."""
    _check(atol, rtol, theta, h_init, pid)
    sigmas, denoiser = loop.sigmas, loop.denoiser
    sigma_min = float(sigmas[-2]) if len(sigmas) > 2 else float(sigmas[0])
    lam, lam_end = -math.log(float(sigmas[0])), -math.log(sigma_min)
    h, x_prev, errs = h_init, x, []
    accepted = rejected = 0
    while lam_end - lam > 1e-12 * max(1.0, abs(lam_end)):
        if accepted + rejected >= max_steps:
            raise RuntimeError(f"adaptive solver gave up after {max_steps} attempts at σ={math.exp(-lam):.4g}")
        if h < 1e-10:
            raise RuntimeError(f"adaptive step size underflow (h={h:.3g}) at σ={math.exp(-lam):.4g}")
        last = h >= lam_end - lam
        h = lam_end - lam if last else h
        sigma = math.exp(-lam)
        sigma_next = sigma_min if last else math.exp(-(lam + h))
        loop.begin(accepted)
        x_lo, x_hi, denoised = pair(x, sigma, sigma_next)
        E = error_norm(x_hi, x_lo, x_prev, atol, rtol)
        if E <= 1:
            x, x_prev, lam = x_hi, x_lo, (lam_end if last else lam + h)
            errs = [E] + errs[:2]
            accepted += 1
            loop.done(accepted - 1, x, denoised, sigma=sigma, sigma_next=sigma_next, accepted=accepted,
                      rejected=rejected)
            cur = errs
        else:
            rejected += 1
            cur = [E] + errs[:2]
        h = min(h * step_factor(cur, exponent, theta, pid), lam_end - lam) if lam < lam_end else h
    loop.begin(accepted)
    denoised = denoiser(x, sigma_min)
    loop.done(accepted, denoised, denoised, sigma=sigma_min, sigma_next=0.0, accepted=accepted, rejected=rejected)
    loop.stats.update(solver="adaptive", accepted=accepted, rejected=rejected)
    return denoised


# ------------------------------------------------------------------ DPM-Solver adaptive

def _dpm_pair(denoiser, order: int, prediction: str):
    """DPM-Solver-1/2 (order 2) or DPM-Solver-2/3 (order 3) sharing their evaluations (Lu et al.
    2022, Algs. 1-2 and App. C; r1 = 1/2 resp. r1, r2 = 1/3, 2/3), on dpm_solver.py's exp_step."""
    def pair(x, sigma, sigma_next):
        d_s = denoiser(x, sigma)
        m0 = model_output(x, d_s, sigma, prediction)
        if order == 2:
            lower = exp_step(x, sigma, sigma_next, [m0], prediction)
            return lower, singlestep_update(denoiser, x, sigma, sigma_next, m0, 2, prediction), d_s
        r1, r2 = 1 / 3, 2 / 3
        s1, s2 = sub_sigma(sigma, sigma_next, r1), sub_sigma(sigma, sigma_next, r2)
        u1 = exp_step(x, sigma, s1, [m0], prediction)
        d1 = model_output(u1, denoiser(u1, s1), s1, prediction) - m0
        lower = exp_step(x, sigma, sigma_next, [m0 + d1 / (2 * r1)], prediction)       # DPM-Solver-2
        u2 = exp_step(x, sigma, s2, [m0, d1 * (r2 / r1)], prediction)
        d2 = model_output(u2, denoiser(u2, s2), s2, prediction) - m0
        return lower, exp_step(x, sigma, sigma_next, [m0, d2 / r2], prediction), d_s     # DPM-Solver-3
    return pair


@register("dpm-solver-12", loop=True, order=2)
@register("dpm-solver-23", loop=True, order=3)
def dpm_solver_adaptive(loop, x, *, order: int = 2,
                        atol: float = 0.0078, rtol: float = 0.05, theta: float = 0.9, h_init: float = 0.05,
                        pid=(0.0, 1.0, 0.0), max_steps: int = 10_000, prediction: str = "noise"):
    """Adaptive DPM-Solver (Lu et al. 2022, App. C, Alg. 4): DPM-Solver-12 (order=2) or -23
    (order=3), h_new = θ h E^{-1/order} in λ; pid=(p, i, d) for a PID controller instead;
    prediction="data" runs the same pairs in DPM-Solver++ form."""
    check_options(order, prediction, orders=(2, 3))
    return adaptive_solve(loop, x, _dpm_pair(loop.denoiser, order, prediction), exponent=1 / order,
                          atol=atol, rtol=rtol, theta=theta, h_init=h_init, pid=pid, max_steps=max_steps)


# ------------------------------------------------------------------ Gotta Go Fast

def _ggf_pair(denoiser, noise):
    """Euler–Maruyama and improved Euler with the same z on the reverse SDE in u = log σ:
    dx = 2 (x - D) du + σ sqrt(2) dW̄_u (Jolicoeur-Martineau et al. 2021, Alg. 1)."""
    def pair(x, sigma, sigma_next):
        h = math.log(sigma) - math.log(sigma_next)
        z = noise(x)
        d = denoiser(x, sigma)
        x_em = x - (x - d) * (2 * h) + z * (sigma * math.sqrt(2 * h))
        x_tilde = x - (x_em - denoiser(x_em, sigma_next)) * (2 * h) + z * (sigma_next * math.sqrt(2 * h))
        return x_em, (x_em + x_tilde) / 2, d
    return pair


@register("adaptive-sde", loop=True)
def adaptive_sde(loop, x, *, atol: float = 0.0078, rtol: float = 0.05, theta: float = 0.9, r: float = 0.9, h_init: float = 0.05,
                 pid=(0.0, 1.0, 0.0), max_steps: int = 10_000):
    """Gotta Go Fast (Jolicoeur-Martineau et al. 2021, Alg. 1): adaptive SDE solver, EM +
    improved-Euler pair, mixed tolerance (atol, rtol: the paper's ε_abs, ε_rel), h ← min(θ h E^{-r}, rest), in log σ."""
    if r <= 0:
        raise ValueError(f"r (controller exponent) must be > 0, got {r}")
    return adaptive_solve(loop, x, _ggf_pair(loop.denoiser, loop.noise), exponent=r, atol=atol, rtol=rtol, theta=theta, h_init=h_init, pid=pid, max_steps=max_steps)

