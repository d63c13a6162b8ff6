"""Network -> denoiser wrappers, EDM preconditioning and guidance as a denoiser transform.

The one contract: ``D(x, sigma, cond=None) -> x0_hat`` with ``x = x0 + sigma * eps`` (VE form),
``x: [B, ...]``, ``sigma: [B]`` or a scalar. Every solver, schedule, cache and metric in effdiff
sees only this; networks trained in other forms are wrapped here.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from .process import Process, EDM
from .context import current_context

Tensor = torch.Tensor


def as_batch_sigma(sigma, x: Tensor) -> Tensor:
    """σ as a [B] tensor in x's dtype and device (accepts a float, a 0-d or a [B] tensor)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype if not torch.is_tensor(sigma) else None, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or shaped [B]=[{x.shape[0]}], got {tuple(sigma.shape)}")
    return sigma.to(x.dtype)


def append_dims(v: Tensor, x: Tensor) -> Tensor:
    """Broadcast a [B] tensor against x: [B, 1, 1, ...] (k-diffusion's ``append_dims``)."""
    return v.reshape(-1, *([1] * (x.ndim - 1)))


_bc = append_dims          # the old private name, kept for modules that imported it


# x0 from the network output, per parameterization. Arguments (all broadcast to x):
#   out   network output       x     VE-form input (x0 + σ eps)
#   xn    network input        a, b  marginal coefficients: xn = a x0 + b eps  (b = a σ)
#   da,db d a/dt, d b/dt       s     σ
def _x0_from_eps(out, x, xn, a, b, da, db, s):
    return x - s * out


def _x0_from_x0(out, x, xn, a, b, da, db, s):
    return out


def _x0_from_v(out, x, xn, a, b, da, db, s):
    """v = a eps - b x0 (Salimans & Ho 2022)."""
    return (a * xn - b * out) / (a * a + b * b)


def _x0_from_velocity(out, x, xn, a, b, da, db, s):
    """v = d xn / dt = a' x0 + b' eps (flow matching; rectified flow: v = eps - x0)."""
    return (db * xn - b * out) / (a * db - b * da)


def _x0_from_score(out, x, xn, a, b, da, db, s):
    """score of the marginal of xn: -eps / b."""
    return x + s * b * out


PREDICTIONS = {"eps": _x0_from_eps, "x0": _x0_from_x0, "v": _x0_from_v,
               "velocity": _x0_from_velocity, "score": _x0_from_score}


def prediction_target(prediction: str, x0: Tensor, eps: Tensor, a: Tensor, b: Tensor,
                      da: Tensor, db: Tensor) -> Tensor:
    """What a network of this parameterization should output (the training target)."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return a * eps - b * x0
    if prediction == "velocity":
        return da * x0 + db * eps
    if prediction == "score":
        return -eps / b
    raise ValueError(f"unknown prediction {prediction!r}; known: {', '.join(PREDICTIONS)}")


class Denoiser(nn.Module):
    """Wrap ``net(x_t, c_noise, class_labels)`` trained on ``process`` with output type
    ``prediction`` (eps, x0, v, velocity, score) as ``D(x, sigma, cond) -> x0``.

    ``num_classes`` > 0 makes it class-conditional: ``cond`` is a LongTensor of labels and
    ``None`` (or the label ``num_classes``) is the null class used by guidance.
    """

    def __init__(self, net: nn.Module, process: Process, prediction: str = "eps", num_classes: int = 0):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; known: {', '.join(PREDICTIONS)}")
        self.net, self.process, self.prediction = net, process, prediction
        self.cond_classes = int(num_classes)

    def _param_dtype(self, x: Tensor) -> torch.dtype:
        """The network's dtype (a network without parameters runs in x's dtype)."""
        p = next(iter(self.net.parameters()), None)
        return p.dtype if p is not None else x.dtype

    @property
    def null_class(self) -> int | None:
        return self.cond_classes if self.cond_classes > 0 else None

    def labels(self, cond, batch: int, device) -> Tensor | None:
        """Class labels for the network: ``cond`` checked, ``None`` -> the null class."""
        if self.cond_classes == 0:
            return None
        if cond is None:
            return torch.full((batch,), self.cond_classes, dtype=torch.long, device=device)
        cond = torch.as_tensor(cond, device=device)
        if cond.ndim == 0:
            cond = cond.expand(batch)
        if cond.shape != (batch,) or cond.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"cond must be integer class labels shaped [{batch}], got {tuple(cond.shape)} {cond.dtype}")
        if (cond < 0).any() or (cond > self.cond_classes).any():
            raise ValueError(f"class labels must lie in [0, {self.cond_classes}] ({self.cond_classes} = null)")
        return cond.long()

    def coefficients(self, sigma: Tensor):
        """(t, a, b, da, db) in float64 for VE-form σ [B]."""
        s = sigma.double()
        t = self.process.sigma_to_t(s)
        a = self.process.alpha_of_sigma(s)
        b = a * s
        if self.prediction == "velocity":
            da, db = self.process.derivatives(t)
        else:
            da = db = torch.zeros_like(t)
        return t, a, b, da, db

    def scalar_coefficients(self, s: float) -> tuple[float, ...]:
        """(a, b, da, db, c_noise) as floats for one σ, memoised (sampling revisits the same σ)."""
        memo = self.__dict__.setdefault("_memo", {})
        hit = memo.get(s)
        if hit is None:
            t, a, b, da, db = self.coefficients(torch.tensor([s], dtype=torch.float64))
            hit = (float(a), float(b), float(da), float(db), float(self.process.c_noise(t)))
            if len(memo) > 100_000:
                memo.clear()
            memo[s] = hit
        return hit

    def forward(self, x: Tensor, sigma, cond=None) -> Tensor:
        sigma = as_batch_sigma(sigma, x)
        dtype = self._param_dtype(x)
        labels = self.labels(cond, x.shape[0], x.device)
        if sigma.shape[0] == 1 or sigma.stride(0) == 0:   # one σ for the batch: float coefficients
            s = float(sigma[0])
            a, b, da, db, c = self.scalar_coefficients(s)
            xn = x * a
            out = self.net(xn.to(dtype), torch.full((x.shape[0],), c, dtype=dtype, device=x.device), labels)
            return PREDICTIONS[self.prediction](out.to(x.dtype), x, xn, a, b, da, db, s)
        t, a, b, da, db = self.coefficients(sigma)
        coefs = torch.stack([a, b, da, db, sigma.double(), self.process.c_noise(t)]).to(x.device)  # [6, B]
        a_, b_, da_, db_, s_ = (_bc(c, x) for c in coefs[:5].to(x.dtype))
        xn = a_ * x
        out = self.net(xn.to(dtype), coefs[5].to(dtype), labels).to(x.dtype)
        return PREDICTIONS[self.prediction](out, x, xn, a_, b_, da_, db_, s_)


class EDMDenoiser(nn.Module):
    """EDM preconditioning (Karras et al. 2022, Table 1):
    D(x, σ) = c_skip x + c_out F(c_in x, c_noise), with c_skip = σd²/(σ²+σd²),
    c_out = σ σd / sqrt(σ²+σd²), c_in = 1/sqrt(σ²+σd²), c_noise = ln(σ)/4."""

    def __init__(self, net: nn.Module, sigma_data: float = 0.5, num_classes: int = 0):
        super().__init__()
        self.net, self.sigma_data, self.cond_classes = net, float(sigma_data), int(num_classes)
        self.process, self.prediction = EDM(sigma_data=sigma_data), "edm"

    null_class = Denoiser.null_class
    labels = Denoiser.labels

    def preconditioning(self, sigma: Tensor):
        sd = self.sigma_data
        c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
        c_out = sigma * sd / (sigma ** 2 + sd ** 2).sqrt()
        c_in = 1 / (sigma ** 2 + sd ** 2).sqrt()
        return c_skip, c_out, c_in, sigma.log() / 4

    def forward(self, x: Tensor, sigma, cond=None) -> Tensor:
        sigma = as_batch_sigma(sigma, x)
        c_skip, c_out, c_in, c_noise = self.preconditioning(sigma.double())
        dtype = next(self.net.parameters()).dtype
        f = self.net((_bc(c_in.to(x.dtype), x) * x).to(dtype), c_noise.to(dtype),
                     self.labels(cond, x.shape[0], x.device)).to(x.dtype)
        return _bc(c_skip.to(x.dtype), x) * x + _bc(c_out.to(x.dtype), x) * f


@dataclass
class GuidanceConfig:
    """Classifier-free guidance (Ho & Salimans 2022): D_u + w (D_c - D_u).

    scale: w (1 = conditional only, no extra evaluation). interval: apply guidance only for
    σ in [lo, hi] (Kynkäänniemi et al. 2024). rescale: φ of Lin et al. 2024 (std rescaling).
    """
    scale: float = 1.0
    interval: tuple[float, float] | None = None
    rescale: float = 0.0


def map_cond(fn, *conds):
    """``fn`` applied leaf by leaf to conditions: tensors, or dicts of them (nested, as SDXL's
    added_cond_kwargs), walked by the keys of the first."""
    if isinstance(conds[0], dict):
        return {k: map_cond(fn, *(c[k] for c in conds)) for k in conds[0]}
    return fn(*conds)


def cond_leaves(cond) -> list:
    """The leaves of a condition (itself, or a dict's values, nested)."""
    return [v for c in cond.values() for v in cond_leaves(c)] if isinstance(cond, dict) else [cond]


def cat_cond(a, b):
    """[a; b] along the batch, leaf by leaf (non-tensor leaves: a's)."""
    return map_cond(lambda u, v: torch.cat([u, v]) if torch.is_tensor(u) else u, a, b)


class CFG(nn.Module):
    """Guidance as a denoiser transform: the conditional and unconditional branches run in one
    batched call ``[x; x]`` with ``[cond; null]``. The loop context's ``branch`` reads "cfg"
    during that call, and ``skip_uncond`` (set by hooks such as TGATE) drops the second half."""

    def __init__(self, denoiser, scale: float = 1.0, interval=None, rescale: float = 0.0, null_cond=None):
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) \
                or abs(scale) > 1e6:
            raise ValueError(f"guidance scale must be a finite number with |w| <= 1e6, got {scale!r}")
        self.denoiser = denoiser
        self.config = GuidanceConfig(scale, tuple(interval) if interval else None, rescale)
        self.null_cond = null_cond
        self.cond_classes = getattr(denoiser, "cond_classes", 0)

    def _null(self, cond: Tensor):
        if self.null_cond is not None:
            return torch.as_tensor(self.null_cond, device=cond.device).expand_as(cond)
        null = getattr(self.denoiser, "null_class", None)
        if null is None:
            raise ValueError("guidance needs a null condition: the denoiser has no null class; pass null_cond=")
        return torch.full_like(cond, null)

    def forward(self, x: Tensor, sigma, cond=None) -> Tensor:
        cfg = self.config
        sigma = as_batch_sigma(sigma, x)
        active = cond is not None and cfg.scale != 1.0
        if active and cfg.interval is not None:
            lo, hi = cfg.interval
            active = bool(((sigma >= lo) & (sigma <= hi)).any())
        ctx = current_context()
        if not active or (ctx is not None and ctx.skip_uncond):
            return self.denoiser(x, sigma, cond)
        if isinstance(cond, dict):          # a dict of model keywords (SDXL, PixArt): null_cond has the same keys
            if not isinstance(self.null_cond, dict):
                raise ValueError("a dict cond needs null_cond= a dict with the same keys")
            pair = cat_cond(cond, self.null_cond)
        else:
            cond = torch.as_tensor(cond, device=x.device)
            if cond.ndim == 0:
                cond = cond.expand(x.shape[0])
            pair = torch.cat([cond, self._null(cond)])
        with (ctx.branch_scope("cfg") if ctx is not None else nullcontext()):
            both = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), pair)
        d_c, d_u = both.chunk(2)
        w = torch.full_like(sigma, cfg.scale)
        if cfg.interval is not None:
            lo, hi = cfg.interval
            w = torch.where((sigma >= lo) & (sigma <= hi), w, torch.ones_like(w))
        # guide in eps-space (identical to x0-space for a fixed σ), then optionally rescale
        out = d_u + _bc(w, x) * (d_c - d_u)
        if cfg.rescale > 0:
            eps_c, eps_g = (x - d_c) / _bc(sigma, x), (x - out) / _bc(sigma, x)
            dims = tuple(range(1, x.ndim))
            eps_r = eps_g * (eps_c.std(dims, keepdim=True) / eps_g.std(dims, keepdim=True).clamp_min(1e-12))
            eps = cfg.rescale * eps_r + (1 - cfg.rescale) * eps_g
            out = x - _bc(sigma, x) * eps
        return out


def guided(denoiser, scale: float = 1.0, **kw):
    """``denoiser`` with classifier-free guidance; scale 1 returns it unchanged."""
    return denoiser if scale == 1.0 and not kw.get("interval") else CFG(denoiser, scale, **kw)
