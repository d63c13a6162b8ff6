"""Model Guidance (Tang et al. 2025, "Diffusion Models without Classifier-free Guidance"): train the
conditional model towards the guided target, so that one evaluation per step samples like CFG.

For a conditional sample the regression target t (the network's own parameterization: eps, x0, v or
velocity) becomes ``t' = t + w · sg(f(x, σ, c) - f(x, σ, ∅))``, where f is the guide network (the EMA
of the model being trained, as the paper; or the online model itself) and sg stops the gradient.
Samples whose condition was dropped (the trainer's ``p_uncond``) keep the plain target, so the null
class stays the unconditional model. Guidance is linear in every affine parameterization at fixed
(x, σ), so guiding the network output equals guiding x0 or eps.

At the fixed point (guide = learner, f_∅ = the unconditional optimum u):
``f_c = t*_c + w (f_c - u)``, i.e. ``f_c = u + (t*_c - u) / (1 - w)``: CFG with scale 1 / (1 - w)
(``w_for_cfg_scale``). With a frozen guide the target is CFG of the guide at scale 1 + w.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..denoisers import Denoiser, _bc

Tensor = torch.Tensor

GUIDES = ("ema", "self")


@dataclass
class MGConfig:
    """w: the guidance weight of the target (0 = the plain loss); guide: "ema" (the EMA network, as
    the paper) or "self" (the online network, stop-gradient); schedule: "constant" w, or "linear-warmup"
    (w ramps from 0 over ``warmup_steps`` optimizer steps, so the guide term starts from a trained model)."""
    w: float = 0.5
    guide: str = "ema"
    schedule: str = "constant"
    warmup_steps: int = 0

    def __post_init__(self):
        if not (isinstance(self.w, (int, float)) and 0 <= self.w < 1):
            raise ValueError(f"Model Guidance weight w must be in [0, 1) (CFG scale 1/(1-w)), got {self.w!r}")
        if self.guide not in GUIDES:
            raise ValueError(f"unknown guide {self.guide!r}; known: {', '.join(GUIDES)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown w schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")

    def w_at(self, step: int) -> float:
        return SCHEDULES[self.schedule](self, step)


SCHEDULES = {"constant": lambda c, step: float(c.w),
             "linear-warmup": lambda c, step: float(c.w) * min(1.0, step / max(1, c.warmup_steps))}


def w_for_cfg_scale(scale: float) -> float:
    """The MG weight whose fixed point is CFG at ``scale`` (>= 1): w = 1 - 1/scale."""
    if scale < 1:
        raise ValueError(f"a CFG scale below 1 has no MG weight in [0, 1), got {scale}")
    return 1.0 - 1.0 / scale


def guided_target(target: Tensor, out_c: Tensor, out_u: Tensor, w: float, keep: Tensor) -> Tensor:
    """``target + w (out_c - out_u)`` on the samples where ``keep`` [B] is True (conditional ones), the
    plain target elsewhere. ``out_c``/``out_u``: the guide's conditional / null outputs (no gradient)."""
    return target + _bc((w * keep).to(target.dtype), target) * (out_c - out_u)


def mg_loss(denoiser: Denoiser, guide_net, x0: Tensor, labels: Tensor, sigma: Tensor, eps: Tensor, w: float) -> Tensor:
    """Per-sample Model Guidance loss [B] of ``denoiser`` (a class-conditional ``Denoiser``) at (x0, σ, ε).
    ``labels`` [B] already carry the condition dropout (the null class = ``denoiser.cond_classes``);
    ``guide_net``: the network that gives the stop-gradient guidance term (None: the online one)."""
    if not isinstance(denoiser, Denoiser) or denoiser.cond_classes == 0:
        raise TypeError("Model Guidance trains a class-conditional effdiff Denoiser (it needs a null class)")
    (xn, c_noise, lab), target = _net_io(denoiser, x0, labels, sigma, eps)
    out = denoiser.net(xn, c_noise, lab)
    null = denoiser.cond_classes
    keep = lab != null
    if w > 0 and bool(keep.any()):
        net = guide_net if guide_net is not None else denoiser.net
        with torch.no_grad():
            both = net(torch.cat([xn, xn]), torch.cat([c_noise, c_noise]), torch.cat([lab, torch.full_like(lab, null)]))
        out_c, out_u = both.detach().chunk(2)
        target = guided_target(target, out_c, out_u, w, keep)
    return ((out - target) ** 2).mean(tuple(range(1, x0.ndim)))


def _net_io(denoiser: Denoiser, x0: Tensor, labels: Tensor, sigma: Tensor, eps: Tensor):
    """The network's inputs (xn, c_noise, labels) at (x0, σ, ε) and its plain regression target."""
    from ..objectives import DiffusionLoss
    return DiffusionLoss().net_io(denoiser, x0, labels, sigma, eps)
