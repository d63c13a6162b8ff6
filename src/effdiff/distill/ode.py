"""Teacher calls during distillation, with a noise level per sample: guided evaluation at a
per-sample scale w and one probability-flow ODE step (DDIM / Euler or Heun) on σ [B] tensors.

The driver's solvers (``effdiff.solvers``) step a whole batch at one σ; distillation losses draw
σ per sample, so these are the same formulas (Song et al. 2021; Karras et al. 2022, Alg. 1)
written for σ shaped [B].
"""
from __future__ import annotations

import torch

from ..denoisers import append_dims

Tensor = torch.Tensor


def guided_x0(teacher, x: Tensor, sigma: Tensor, cond, w: Tensor | float | None = None) -> Tensor:
    """Classifier-free guidance (Ho & Salimans 2022) D_u + w (D_c - D_u) with w per sample
    ([B] or a float); one batched call. ``w`` None or ``cond`` None: the plain teacher."""
    if w is None or cond is None:
        return teacher(x, sigma, cond)
    w = torch.as_tensor(w, dtype=x.dtype, device=x.device).expand(x.shape[0])
    null = torch.full_like(cond, teacher.null_class)
    d_c, d_u = teacher(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([cond, null])).chunk(2)
    return d_u + append_dims(w, x) * (d_c - d_u)


def ddim_to(x: Tensor, x0: Tensor, sigma: Tensor, sigma_next: Tensor) -> Tensor:
    """DDIM (eta = 0) from σ to σ' given the x0 estimate: x' = x0 + (σ'/σ)(x - x0) (VE form)."""
    return torch.lerp(x0, x, append_dims(sigma_next / sigma, x).to(x.dtype))


def ode_step(teacher, x: Tensor, sigma: Tensor, sigma_next: Tensor, cond=None, w=None,
             order: int = 1) -> Tensor:
    """One step of the probability-flow ODE dx/dσ = (x - D)/σ from σ to σ' ([B] each): order 1 is
    DDIM / Euler, order 2 Heun (Euler where σ' = 0). NFE: ``order`` teacher calls."""
    if order not in (1, 2):
        raise ValueError(f"order must be 1 (DDIM) or 2 (Heun), got {order}")
    d0 = guided_x0(teacher, x, sigma, cond, w)
    x1 = ddim_to(x, d0, sigma, sigma_next)
    if order == 1:
        return x1
    live = sigma_next > 0
    s2 = torch.where(live, sigma_next, sigma)          # avoid σ' = 0 in the corrector's call
    d1 = guided_x0(teacher, x1, s2, cond, w)
    dt = append_dims((sigma_next - sigma).to(x.dtype), x)
    slope0 = (x - d0) / append_dims(sigma.to(x.dtype), x)
    slope1 = (x1 - d1) / append_dims(s2.to(x.dtype), x)
    heun = x + (slope0 + slope1) / 2 * dt
    return torch.where(append_dims(live, x), heun, x1)
