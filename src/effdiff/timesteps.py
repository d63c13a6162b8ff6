"""Sampling schedules: pure functions returning a decreasing float64 σ tensor ending in 0.

σ is the VE-form noise level of the denoiser contract, so a schedule is model-agnostic; the
ones defined in a process's own time (uniform-t, quadratic, diffusers' discrete spacings, flow
shift, FastDPM) take the process. Fitted schedules (AYS, DP; see ``schedule_opt``) are reached
by name: ``get("ays:digits-unet", n, process)``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from .errors import UnknownName
from .io import atomic_write, read_json
from .process import Process

Tensor = torch.Tensor


def _n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of steps must be a positive integer, got {n!r}")
    return n


def _range(sigma_min, sigma_max):
    if not (0 < sigma_min < sigma_max) or not math.isfinite(sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    return float(sigma_min), float(sigma_max)


def append_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas.to(torch.float64), sigmas.new_zeros(1, dtype=torch.float64)])


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. 2022, eq. 5: σ_i = (σmax^(1/ρ) + i/(n-1) (σmin^(1/ρ) - σmax^(1/ρ)))^ρ."""
    n, (lo, hi) = _n(n), _range(sigma_min, sigma_max)
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    return append_zero((hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho)


def resample(sigmas: Tensor, n: int, rho: float = 7.0) -> Tensor:
    """A schedule (decreasing σ ending in 0) resampled to ``n`` steps: its nonzero σ interpolated linearly over
    the step index in σ^(1/ρ), Karras's ramp. A ``karras`` grid of any length resamples to ``karras(n, σmin, σmax,
    ρ)`` (to float rounding); any other keeps its first and last σ and is re-spaced along its own shape. (Fitted
    schedules are carried to other step counts log-linearly instead: ``interpolate``.)"""
    n = _n(n)
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    try:
        s = check_sigmas(sigmas)
    except ValueError as e:
        raise ValueError(f"need a schedule: {e}") from None
    if n == len(s) - 1:                                   # already n steps: the grid itself, bit for bit
        return s.clone()
    u = s[:-1] ** (1 / rho)
    if len(u) == 1:
        raise ValueError(f"a one-step schedule cannot be resampled to {n} steps")
    pos = torch.linspace(0, len(u) - 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    i = pos.floor().long().clamp(max=len(u) - 2)
    return append_zero((u[i] + (pos - i) * (u[i + 1] - u[i])) ** rho)


def exponential(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """σ uniform in log: equally spaced in the half log-SNR λ = -log σ."""
    n, (lo, hi) = _n(n), _range(sigma_min, sigma_max)
    return append_zero(torch.exp(torch.linspace(math.log(hi), math.log(lo), n, dtype=torch.float64)))


def logsnr_uniform(n: int, process: Process | None = None, sigma_min: float | None = None,
                   sigma_max: float | None = None) -> Tensor:
    """Uniform in log-SNR (Lu et al. 2022, DPM-Solver's 'logSNR' spacing) over the process's
    σ range (or the one given). In the VE-form contract this is ``exponential``."""
    lo = sigma_min if sigma_min is not None else process.sigma_min
    hi = sigma_max if sigma_max is not None else process.sigma_max
    return exponential(n, lo, hi)


def _in_t(n: int, process: Process, ramp: Tensor, t_min, t_max) -> Tensor:
    t_min = process.t_min if t_min is None else t_min
    t_max = process.t_max if t_max is None else t_max
    if not process.t_min <= t_min < t_max <= process.t_max:
        raise ValueError(f"t range [{t_min}, {t_max}] outside the process's [{process.t_min}, {process.t_max}]")
    t = t_max + ramp * (t_min - t_max)
    return append_zero(process.t_to_sigma(t))


def uniform_t(n: int, process: Process, t_min: float | None = None, t_max: float | None = None) -> Tensor:
    """n times equally spaced in the process's own t from t_max to t_min (DDIM's 'uniform'
    skip on a discrete VP, a uniform grid in t for flow models)."""
    n = _n(n)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    return _in_t(n, process, ramp, t_min, t_max)


def quadratic(n: int, process: Process, t_min: float | None = None, t_max: float | None = None) -> Tensor:
    """Times quadratically spaced, denser at low noise (Song et al. 2021, DDIM's 'quad')."""
    n = _n(n)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    return _in_t(n, process, 1 - (1 - ramp) ** 2, t_min, t_max)


def full(process: Process) -> Tensor:
    """Every step of a discrete process's table, from the last to the first (DDPM's 1000 steps)."""
    if not getattr(process, "discrete", False):
        raise ValueError("full() needs a discrete process; use uniform_t(n, process) for continuous ones")
    return append_zero(process.t_to_sigma(torch.arange(process.num_steps - 1, -1, -1, dtype=torch.float64)))


def polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> Tensor:
    """k-diffusion's polyexponential schedule (Crowson, k-diffusion ``get_sigmas_polyexponential``):
    log σ_i = log σmin + (1 - i/(n-1))^ρ (log σmax - log σmin); ρ = 1 is ``exponential``."""
    n, (lo, hi) = _n(n), _range(sigma_min, sigma_max)
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    ramp = torch.linspace(1, 0, n, dtype=torch.float64) if n > 1 else torch.ones(1, dtype=torch.float64)
    return append_zero(torch.exp(math.log(lo) + ramp ** rho * (math.log(hi) - math.log(lo))))


# --- discrete spacings (diffusers' ``timestep_spacing``) ------------------------------

SPACINGS = ("linspace", "leading", "trailing")


def spacing_timesteps(n: int, num_train_steps: int, spacing: str, steps_offset: int = 0) -> Tensor:
    """The n integer timesteps (0-indexed, decreasing) of diffusers' ``timestep_spacing``
    (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Table 2,
    shifted from their 1-indexed t to diffusers' 0-indexed t). With T train steps:
    linspace = round(linspace(0, T-1, n)), leading = arange(n) * (T // n) + steps_offset,
    trailing = round(arange(T, 0, -T/n)) - 1. ``steps_offset`` applies to leading only, as in
    diffusers (SD uses steps_offset=1: 901, 801, ..., 1 for T=1000, n=10)."""
    n, T = _n(n), int(num_train_steps)
    if spacing not in SPACINGS:
        raise ValueError(f"unknown timestep spacing {spacing!r}; known: {', '.join(SPACINGS)}")
    if n > T:
        raise ValueError(f"{n} steps is more than the process's {T} train steps")
    if isinstance(steps_offset, bool) or not isinstance(steps_offset, int) or steps_offset < 0:
        raise ValueError(f"steps_offset must be a non-negative integer, got {steps_offset!r}")
    if spacing == "linspace":
        t = torch.linspace(0, T - 1, n, dtype=torch.float64).round().flip(0)
    elif spacing == "leading":
        t = (torch.arange(n, dtype=torch.float64) * (T // n)).flip(0) + steps_offset
    else:
        t = (T - torch.arange(n, dtype=torch.float64) * (T / n)).round() - 1
    if t.max() > T - 1:
        raise ValueError(f"steps_offset={steps_offset} pushes timestep {int(t.max())} past the table's last step {T - 1}")
    return t


def _discrete(process: Process, what: str):
    if not getattr(process, "discrete", False):
        raise ValueError(f"{what} needs a discrete process (a VP table); got {process!r}")
    return process


def discrete_spacing(n: int, process: Process, spacing: str = "trailing", steps_offset: int = 0) -> Tensor:
    """σ at the integer timesteps of ``spacing_timesteps`` on a discrete process's table, then 0."""
    _discrete(process, f"the {spacing!r} spacing")
    return append_zero(process.t_to_sigma(spacing_timesteps(n, process.num_steps, spacing, steps_offset)))


def linspace(n: int, process: Process, steps_offset: int = 0) -> Tensor:
    """diffusers' ``timestep_spacing="linspace"`` (iDDPM's spacing; Lin et al. 2024, Table 2)."""
    return discrete_spacing(n, process, "linspace", steps_offset)


def leading(n: int, process: Process, steps_offset: int = 0) -> Tensor:
    """diffusers' ``timestep_spacing="leading"`` (LDM / SD; Lin et al. 2024, Table 2)."""
    return discrete_spacing(n, process, "leading", steps_offset)


def trailing(n: int, process: Process, steps_offset: int = 0) -> Tensor:
    """diffusers' ``timestep_spacing="trailing"`` (starts at the last step; Lin et al. 2024, Table 2)."""
    return discrete_spacing(n, process, "trailing", steps_offset)


# --- flow shift and FastDPM -----------------------------------------------------------

def flow_shift(n: int, process: Process, shift: float = 3.0) -> Tensor:
    """SD3's time shift (Esser et al. 2024, eq. 23: t' = s t / (1 + (s-1) t)) on a uniform grid.

    The shift is applied to u uniform in [0, 1] and mapped onto the process's [t_min, t_max]
    (t = t_min + u' (t_max - t_min)), so the endpoints stay those of ``uniform_t`` and shift=1
    is exactly ``uniform_t``. For a flow process with t_min = 0, t_max = 1 this is SD3's
    schedule, where the shift is σ' = s σ (larger s spends more steps at high noise)."""
    n = _n(n)
    if not (shift > 0 and math.isfinite(shift)):
        raise ValueError(f"shift must be a positive finite number, got {shift}")
    r = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    # in the ramp r = 1 - u (0 at t_max) the shift reads r' = r / (1 + (s-1)(1-r))
    return _in_t(n, process, r / (1 + (shift - 1) * (1 - r)), None, None)


FASTDPM_KINDS = ("uniform", "quadratic")


def _fastdpm_betas(n: int, beta_0: float, beta_n: float, kind: str) -> Tensor:
    r = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.ones(1, dtype=torch.float64)
    if kind == "uniform":
        return beta_0 + r * (beta_n - beta_0)
    return (math.sqrt(beta_0) + r * (math.sqrt(beta_n) - math.sqrt(beta_0))) ** 2


def fastdpm_steps(n: int, process: Process, kind: str = "uniform") -> Tensor:
    """FastDPM's continuous steps (Kong & Ping 2021, Sec. 4, the 'VAR' schedules): an n-step
    variance schedule β̂ (uniform: linear in β̂; quadratic: linear in sqrt β̂) from the table's
    β_0, with β̂_n chosen so that prod(1 - β̂) reaches the table's last ᾱ; each γ̄_s = prod_{k<=s}
    (1 - β̂_k) is mapped to a fractional t by interpolating the table (the process's log σ is
    linear between integer steps). Returns the n decreasing fractional t's (t_max ... 0)."""
    n = _n(n)
    _discrete(process, "fastdpm")
    if kind not in FASTDPM_KINDS:
        raise ValueError(f"unknown FastDPM kind {kind!r}; known: {', '.join(FASTDPM_KINDS)}")
    abar = process.alphas_cumprod
    beta_0, target = float(1 - abar[0]), float(torch.log(abar[-1]))
    if n == 1:
        return torch.tensor([process.t_max], dtype=torch.float64)

    def log_gamma_end(b):
        return float(torch.log1p(-_fastdpm_betas(n, beta_0, b, kind)).sum())

    lo, hi = beta_0, 1.0 - 1e-15
    if log_gamma_end(lo) <= target:
        raise ValueError(f"{n} steps of β={beta_0:.3g} already pass the table's final noise level; use fewer steps")
    for _ in range(200):  # bisection: log γ̄_n decreases in β̂_n
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if log_gamma_end(mid) > target else (lo, mid)
    log_gamma = torch.cumsum(torch.log1p(-_fastdpm_betas(n, beta_0, 0.5 * (lo + hi), kind)), 0)
    sigma = torch.sqrt(torch.expm1(-log_gamma))   # σ = sqrt((1 - γ̄) / γ̄)
    t = process.sigma_to_t(sigma).clamp(process.t_min, process.t_max)
    t[0], t[-1] = process.t_min, process.t_max      # exact endpoints (γ̄_1 = ᾱ_0, γ̄_n = ᾱ_T)
    return t.flip(0)


def fastdpm(n: int, process: Process, kind: str = "uniform") -> Tensor:
    """σ at FastDPM's continuous steps (Kong & Ping 2021; see ``fastdpm_steps``), then 0."""
    return append_zero(process.t_to_sigma(fastdpm_steps(n, process, kind)))


SCHEDULES = {"karras": karras, "exponential": exponential, "polyexponential": polyexponential,
             "logsnr": logsnr_uniform, "uniform": uniform_t, "quadratic": quadratic,
             "linspace": linspace, "leading": leading, "trailing": trailing,
             "flow-shift": flow_shift, "fastdpm": fastdpm}
# schedules defined in the process's own time: called as fn(n, process, **kw)
_TAKES_PROCESS = {"uniform", "quadratic", "logsnr", "linspace", "leading", "trailing", "flow-shift", "fastdpm"}


def get(name: str, n: int, process: Process, **kw) -> Tensor:
    """A schedule by name over the process's σ range: ``get("karras", 10, process)``.

    ``"METHOD:MODEL"`` (e.g. ``"ays:digits-unet"``) is a fitted schedule shipped in
    ``effdiff/zoo/schedules/METHOD-MODEL.json``, log-linearly interpolated to n steps
    (``interpolate``); a path ending in ``.json`` loads that file the same way."""
    if is_fitted(name):
        if kw:
            raise ValueError(f"a fitted schedule ({name!r}) takes no options, got {sorted(kw)}")
        return interpolate(load_schedule(fitted_key(name)), _n(n))
    if name not in SCHEDULES:
        raise UnknownName(f"unknown schedule {name!r}; known schedules: {', '.join(SCHEDULES)} "
                          "(or 'METHOD:MODEL' for a fitted one, e.g. 'ays:digits-unet')")
    if name in _TAKES_PROCESS:
        return SCHEDULES[name](n, process, **kw)
    kw.setdefault("sigma_min", process.sigma_min)
    kw.setdefault("sigma_max", process.sigma_max)
    return SCHEDULES[name](n, **kw)


# ---------------------------------------------------------------------------------------
# fitted schedules: files written by ``schedule_opt`` (``effdiff schedules fit``)
# ---------------------------------------------------------------------------------------

SCHEDULE_DIR = Path(__file__).parent / "zoo" / "schedules"
FORMAT = "effdiff-schedule-1"


def check_sigmas(sigmas) -> Tensor:
    """A σ schedule as a 1-D float64 tensor: finite, non-negative, decreasing, ending in 0."""
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError(f"sigmas must be a 1-D array with at least 2 entries, got shape {tuple(sigmas.shape)}")
    if not torch.isfinite(sigmas).all():
        raise ValueError("sigmas contain NaN or inf")
    if sigmas[-1] != 0:
        raise ValueError(f"sigmas must end in exactly 0 (the clean sample), last entry is {float(sigmas[-1])!r}; "
                         "append 0, e.g. torch.cat([sigmas, sigmas.new_zeros(1)])")
    if (sigmas < 0).any():
        raise ValueError("sigmas must be non-negative")
    if not (sigmas[:-1] > sigmas[1:]).all():
        raise ValueError("sigmas must be strictly decreasing")
    return sigmas


def is_fitted(name: str) -> bool:
    """Whether a schedule name is a fitted one: ``"METHOD:MODEL"`` (shipped) or a ``.json`` file."""
    return ":" in name or name.endswith(".json")


def fitted_key(name: str) -> str:
    """What ``load_schedule`` reads for a fitted schedule's name: ``"METHOD:MODEL"`` -> the shipped file's
    stem ``METHOD-MODEL``; a ``.json`` path as it is."""
    return name if name.endswith(".json") else name.replace(":", "-", 1)


def fitted_names() -> list[str]:
    """Every shipped fitted schedule (``METHOD-MODEL``)."""
    return sorted(p.stem for p in SCHEDULE_DIR.glob("*.json"))


def interpolate(sigmas, n: int) -> Tensor:
    """A fitted schedule re-spaced to n steps by log-linear interpolation: log σ linear in the
    normalised step index (Sabour et al. 2024, how they carry a fitted schedule to other step counts). Ends kept."""
    pos = check_sigmas(sigmas)[:-1]
    n = _n(n)
    if n == len(pos):
        return append_zero(pos.clone())
    if len(pos) == 1:
        raise ValueError("cannot interpolate a one-step schedule to more steps")
    xs, ys = np.linspace(0, 1, len(pos)), np.log(pos.numpy())
    new = np.exp(np.interp(np.linspace(0, 1, n), xs, ys)) if n > 1 else np.exp(ys[:1])
    return append_zero(torch.from_numpy(new))


def save_schedule(path, sigmas, meta: dict | None = None) -> Path:
    """Write a schedule as JSON (``{"format", "sigmas", "meta"}``), atomically."""
    sigmas = check_sigmas(sigmas)
    path = Path(path)
    text = json.dumps({"format": FORMAT, "sigmas": sigmas.tolist(), "meta": meta or {}}, indent=1, sort_keys=True)
    atomic_write(path, text + "\n")
    return path


def load_schedule(name_or_path, with_meta: bool = False):
    """A schedule from a JSON file path or a shipped name (``zoo/schedules/NAME.json``).
    Returns the σ tensor, or ``(sigmas, meta)`` with ``with_meta=True``."""
    p = Path(name_or_path)
    if not (str(name_or_path).endswith(".json") or p.exists()):
        p = SCHEDULE_DIR / f"{name_or_path}.json"
        if not p.exists():
            raise UnknownName(f"unknown fitted schedule {str(name_or_path)!r}; shipped: {', '.join(fitted_names()) or '(none)'} "
                              f"(fit one with: effdiff schedules fit --model MODEL --method ays --steps 10 --out FILE.json)")
    obj = read_json(p, "effdiff schedule", kind=None)   # not UTF-8, invalid, huge ints, deep nesting: one error
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "sigmas" not in obj:
        raise ValueError(f"{str(p)!r} is not an effdiff schedule (format {FORMAT!r})")
    try:
        sigmas = check_sigmas(obj["sigmas"])
    except (ValueError, TypeError, OverflowError, RuntimeError) as e:
        raise ValueError(f"{str(p)!r}: bad sigmas in the schedule: {e}") from None
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise ValueError(f"{str(p)!r}: the schedule's meta must be a JSON object")
    return (sigmas, meta) if with_meta else sigmas
