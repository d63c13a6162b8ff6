"""Forward noise processes and their one shared coordinate, the VE-form noise level σ.

Every process is a marginal ``x_t = alpha(t) * x0 + sigma(t) * eps``. The rest of effdiff
sees only ``σ = sigma(t) / alpha(t)`` (the "VE form" ``x = x_t / alpha = x0 + σ eps``) and
the half log-SNR ``lambda = log(alpha / sigma) = -log σ``. A process converts between its
own time ``t`` and ``σ`` and says what its network is fed (``c_noise``).

Processes: ``VP`` (DDPM linear, cosine, Laplace or custom betas; discrete 1000-step table or
continuous time), ``VE`` (Song et al. 2021), ``EDM`` (Karras et al. 2022, t = σ) and ``Flow``
(rectified flow / flow matching, ``x_t = (1 - t) x0 + t eps``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, asdict

import numpy as np
import torch

Tensor = torch.Tensor


def _np_interp(x: Tensor, xp: np.ndarray, fp: np.ndarray) -> Tensor:
    """Piecewise-linear interpolation (clamped at the ends) of a float64 tensor, via numpy."""
    return torch.from_numpy(np.asarray(np.interp(x.detach().cpu().numpy(), xp, fp), dtype=np.float64)).to(x.device)


def _t(v) -> Tensor:
    """As a float64 tensor (scalars and lists welcome)."""
    return torch.as_tensor(v, dtype=torch.float64)


class Process:
    """Base class: subclasses define ``alpha(t)`` and ``sigma(t)`` (marginal std) on
    ``[t_min, t_max]`` and the inverse ``sigma_to_t``; everything else derives from them."""

    name = "process"
    t_min: float = 0.0
    t_max: float = 1.0

    # --- to implement -----------------------------------------------------------------
    def alpha(self, t) -> Tensor:
        raise NotImplementedError

    def sigma(self, t) -> Tensor:
        raise NotImplementedError

    def sigma_to_t(self, s) -> Tensor:
        """VE-form σ -> this process's time t."""
        raise NotImplementedError

    def c_noise(self, t) -> Tensor:
        """What the network receives as its time input (continuous processes: 1000 t)."""
        return 1000.0 * _t(t)

    # --- derived ----------------------------------------------------------------------
    def t_to_sigma(self, t) -> Tensor:
        """This process's time t -> VE-form σ = sigma(t) / alpha(t)."""
        return self.sigma(t) / self.alpha(t)

    def lam(self, t) -> Tensor:
        """Half log-SNR lambda(t) = log(alpha / sigma)."""
        return torch.log(self.alpha(t)) - torch.log(self.sigma(t))

    def alpha_of_sigma(self, s) -> Tensor:
        return self.alpha(self.sigma_to_t(s))

    def derivatives(self, t) -> tuple[Tensor, Tensor]:
        """(d alpha/dt, d sigma/dt) by autograd in float64 (used by velocity targets)."""
        with torch.enable_grad():
            tt = _t(t).detach().clone().requires_grad_(True)
            out = []
            for f in (self.alpha, self.sigma):
                y = f(tt)
                g = torch.autograd.grad(y.sum(), tt, allow_unused=True)[0] if y.requires_grad else None
                out.append(torch.zeros_like(tt.detach()) if g is None else g.detach())
        return out[0], out[1]

    @property
    def sigma_min(self) -> float:
        return float(self.t_to_sigma(self.t_min))

    @property
    def sigma_max(self) -> float:
        return float(self.t_to_sigma(self.t_max))

    def config(self) -> dict:
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


# ---------------------------------------------------------------------------------------
# VP: x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, so σ = sqrt((1 - abar) / abar)
# ---------------------------------------------------------------------------------------

def _cosine_abar(t: Tensor, s: float = 0.008) -> Tensor:
    """Nichol & Dhariwal 2021, eq. 17."""
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return f / math.cos(s / (1 + s) * math.pi / 2) ** 2


def _laplace_logsnr(t: Tensor, mu: float = 0.0, b: float = 0.5) -> Tensor:
    """Hang & Gu 2024 (Improved noise schedule): log-SNR = mu - b sgn(0.5 - t) log(1 - 2|t - 0.5|)."""
    # 1 - 2|t - 0.5| = 2 min(t, 1 - t), written without the cancellation near t = 0 and 1
    return mu - b * torch.sign(0.5 - t) * torch.log(2 * torch.minimum(t, 1 - t))


def _laplace_t(logsnr: Tensor, mu: float = 0.0, b: float = 0.5) -> Tensor:
    """Inverse of ``_laplace_logsnr``."""
    z = (logsnr - mu) / b
    return torch.where(z >= 0, 0.5 * torch.exp(-z), 1 - 0.5 * torch.exp(z))


VP_SCHEDULES = ("linear", "cosine", "laplace")


class VP(Process):
    """Variance-preserving process (DDPM, Ho et al. 2020).

    ``discrete=True`` uses the N-step table ``alphas_cumprod`` (t is the step index, 0..N-1,
    log σ interpolated linearly between steps, the network sees t). ``discrete=False`` is the
    continuous-time process on ``[t_min, 1]`` (Song et al. 2021; the network sees 1000 t).
    """

    name = "vp"

    def __init__(self, schedule: str = "linear", discrete: bool = True, num_steps: int = 1000,
                 beta_start: float = 1e-4, beta_end: float = 0.02, betas=None, t_min: float | None = None):
        if betas is None and schedule not in VP_SCHEDULES:
            raise ValueError(f"unknown VP schedule {schedule!r}; known: {', '.join(VP_SCHEDULES)} (or pass betas=)")
        if betas is not None:
            schedule, discrete = "custom", True
        if num_steps < 2:
            raise ValueError(f"num_steps must be >= 2, got {num_steps}")
        self.schedule, self.discrete, self.num_steps = schedule, discrete, int(num_steps)
        self.beta_start, self.beta_end = beta_start, beta_end
        # continuous linear: beta(t) = b0 + t (b1 - b0) with b = N * beta (Song et al. 2021)
        self._b0, self._b1 = beta_start * num_steps, beta_end * num_steps
        if discrete:
            if betas is None:
                betas = self._table_betas()
            betas = _t(betas)
            if betas.ndim != 1 or not ((betas > 0) & (betas < 1)).all():
                raise ValueError("betas must be a 1-D array with entries in (0, 1)")
            self.betas = betas
            self.num_steps = len(betas)
            self.alphas_cumprod = torch.cumprod(1 - betas, 0)
            self.log_sigmas = 0.5 * torch.log((1 - self.alphas_cumprod) / self.alphas_cumprod)
            if not (self.log_sigmas.diff() > 0).all():
                raise ValueError("betas must give strictly increasing noise levels")
            self._log_sigmas_np = self.log_sigmas.numpy()
            self._steps_np = np.arange(self.num_steps, dtype=np.float64)
            self.t_min, self.t_max = 0.0, float(self.num_steps - 1)
        else:
            self.t_min = t_min if t_min is not None else 1e-3
            # cosine and Laplace reach alpha = 0 at t = 1: stop where σ is still finite
            self.t_max = {"linear": 1.0, "cosine": 0.9946}.get(schedule, 1.0)
            if schedule == "laplace":  # its log-SNR is Laplace-distributed: cover σ in [0.002, 100]
                self.t_min = t_min if t_min is not None else float(_laplace_t(_t(-2 * math.log(0.002))))
                self.t_max = float(_laplace_t(_t(-2 * math.log(100.0))))

    def _table_betas(self) -> Tensor:
        n = self.num_steps
        if self.schedule == "linear":
            return torch.linspace(self.beta_start, self.beta_end, n, dtype=torch.float64)
        i = torch.arange(n + 1, dtype=torch.float64) / n
        if self.schedule == "laplace":  # spread the table over σ in [0.002, 100]
            lo, hi = float(_laplace_t(_t(-2 * math.log(0.002)))), float(_laplace_t(_t(-2 * math.log(100.0))))
            i = lo + (hi - lo) * i
        abar = self._abar_continuous(i) if self.schedule != "cosine" else _cosine_abar(i)
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)

    def _abar_continuous(self, t: Tensor) -> Tensor:
        if self.schedule == "linear":
            return torch.exp(-0.5 * t ** 2 * (self._b1 - self._b0) - t * self._b0)
        if self.schedule == "cosine":
            return _cosine_abar(t)
        return torch.sigmoid(_laplace_logsnr(t))

    def _log_sigma(self, t: Tensor) -> Tensor:
        if self.discrete:
            if not t.requires_grad:  # fast path: one numpy interpolation (the sampling hot loop)
                return _np_interp(t, self._steps_np, self._log_sigmas_np)
            t = t.clamp(self.t_min, self.t_max)
            lo = t.floor().long().clamp(max=self.num_steps - 2)
            w = t - lo
            return (1 - w) * self.log_sigmas[lo] + w * self.log_sigmas[lo + 1]
        abar = self._abar_continuous(t)
        return 0.5 * (torch.log1p(-abar) - torch.log(abar))

    def t_to_sigma(self, t) -> Tensor:
        return torch.exp(self._log_sigma(_t(t)))

    def alpha(self, t) -> Tensor:
        s = self.t_to_sigma(t)
        return 1 / torch.sqrt(1 + s ** 2)

    def sigma(self, t) -> Tensor:
        s = self.t_to_sigma(t)
        return s / torch.sqrt(1 + s ** 2)

    def alpha_of_sigma(self, s) -> Tensor:
        return 1 / torch.sqrt(1 + _t(s) ** 2)

    def sigma_to_t(self, s) -> Tensor:
        s = _t(s)
        log_s = torch.log(s)
        if self.discrete:
            if not log_s.requires_grad:
                return _np_interp(log_s, self._log_sigmas_np, self._steps_np)
            ls = self.log_sigmas
            idx = torch.searchsorted(ls, log_s.clamp(ls[0], ls[-1]).contiguous()).clamp(1, len(ls) - 1)
            lo, hi = ls[idx - 1], ls[idx]
            w = ((log_s - lo) / (hi - lo)).clamp(0, 1)
            return (idx - 1).to(torch.float64) + w
        if self.schedule == "linear":
            # solve 0.5 (b1 - b0) t^2 + b0 t = log(1 + s^2)
            a, b, c = 0.5 * (self._b1 - self._b0), self._b0, -torch.log1p(s ** 2)
            return (-b + torch.sqrt(b * b - 4 * a * c)) / (2 * a)
        if self.schedule == "cosine":
            abar = 1 / (1 + s ** 2)
            c0 = math.cos(0.008 / 1.008 * math.pi / 2)
            return torch.acos(torch.sqrt(abar) * c0) * 2 / math.pi * 1.008 - 0.008
        return _laplace_t(-2 * log_s)

    def c_noise(self, t) -> Tensor:
        return _t(t) if self.discrete else 1000.0 * _t(t)

    def config(self) -> dict:
        cfg = {"name": self.name, "schedule": self.schedule, "discrete": self.discrete,
               "num_steps": self.num_steps, "beta_start": self.beta_start, "beta_end": self.beta_end}
        if self.schedule == "custom":  # from_config must get the table back
            cfg["betas"] = self.betas.tolist()
        if not self.discrete:
            cfg["t_min"] = self.t_min
        return cfg


class VE(Process):
    """Variance-exploding process (Song et al. 2021): sigma(t) = s_min (s_max / s_min)^t, alpha = 1."""

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self._smin, self._smax = float(sigma_min), float(sigma_max)
        self.t_min, self.t_max = 0.0, 1.0

    def alpha(self, t) -> Tensor:
        return torch.ones_like(_t(t))

    def alpha_of_sigma(self, s) -> Tensor:
        return torch.ones_like(_t(s))

    def sigma(self, t) -> Tensor:
        return self._smin * (self._smax / self._smin) ** _t(t)

    def sigma_to_t(self, s) -> Tensor:
        return torch.log(_t(s) / self._smin) / math.log(self._smax / self._smin)

    def config(self) -> dict:
        return {"name": self.name, "sigma_min": self._smin, "sigma_max": self._smax}


class EDM(Process):
    """Karras et al. 2022: alpha = 1 and t = σ; the network sees c_noise = ln(σ) / 4."""

    name = "edm"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = 0.5):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.t_min, self.t_max, self.sigma_data = float(sigma_min), float(sigma_max), float(sigma_data)

    def alpha(self, t) -> Tensor:
        return torch.ones_like(_t(t))

    def alpha_of_sigma(self, s) -> Tensor:
        return torch.ones_like(_t(s))

    def sigma(self, t) -> Tensor:
        return _t(t)

    def sigma_to_t(self, s) -> Tensor:
        return _t(s)

    def c_noise(self, t) -> Tensor:
        return torch.log(_t(t)) / 4

    def config(self) -> dict:
        return {"name": self.name, "sigma_min": self.t_min, "sigma_max": self.t_max, "sigma_data": self.sigma_data}


class Flow(Process):
    """Rectified flow / flow matching (Liu et al. 2023, Lipman et al. 2023):
    x_t = (1 - t) x0 + t eps, so σ = t / (1 - t) and t = σ / (1 + σ)."""

    name = "flow"

    def __init__(self, t_min: float = 1e-4, t_max: float = 1 - 1e-3):
        if not 0 <= t_min < t_max < 1:
            raise ValueError(f"need 0 <= t_min < t_max < 1, got {t_min}, {t_max}")
        self.t_min, self.t_max = float(t_min), float(t_max)

    def alpha(self, t) -> Tensor:
        return 1 - _t(t)

    def sigma(self, t) -> Tensor:
        return _t(t)

    def sigma_to_t(self, s) -> Tensor:
        s = _t(s)
        return s / (1 + s)

    def alpha_of_sigma(self, s) -> Tensor:
        return 1 / (1 + _t(s))

    def derivatives(self, t) -> tuple[Tensor, Tensor]:
        """(-1, 1): alpha and sigma are linear in t (the autograd result of ``Process.derivatives``, without
        autograd on every velocity-prediction call)."""
        tt = _t(t)
        return -torch.ones_like(tt), torch.ones_like(tt)

    def config(self) -> dict:
        return {"name": self.name, "t_min": self.t_min, "t_max": self.t_max}


PROCESSES = {"vp": VP, "ve": VE, "edm": EDM, "flow": Flow}


def from_config(cfg: dict) -> Process:
    """Rebuild a process from ``process.config()``."""
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    if name not in PROCESSES:
        raise ValueError(f"unknown process {name!r}; known: {', '.join(PROCESSES)}")
    return PROCESSES[name](**cfg)
