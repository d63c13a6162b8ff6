"""Parallel-in-time sampling: the whole trajectory x_0..x_N is the unknown of a fixed-point
system, solved by iterations whose denoiser evaluations over a window of steps run as ONE
batched call (Shih et al. 2023, ParaDiGMS; Tang et al. 2024, ParaTAA).

The inner solver must be a one-step map x_{i+1} = x_i + a_i (x_i - D(x_i, σ_i)) + c_i z_i (the
VE form of DDIM/DDPM/Euler: a_i = σ_down/σ_i - 1, c_i = σ_up), so
x_j = x_t + Σ_{i=t}^{j-1} drift_i(x_i) + c_i z_i  (the Picard form of the chain, ParaDiGMS eq. 5).
Noise z_i is drawn up front in the sequential solver's order, so the converged trajectory is the
sequential sampler's trajectory for the same seed. A state x_j counts as converged when its
squared change per dimension is below τ² times the variance of the ancestral (η = 1) noise of the
step that produces it (ParaDiGMS Alg. 1; that ratio is the same in VP and VE coordinates).

Cost accounting (``stats``): ``iters`` parallel iterations (= batched denoiser calls, which is
what ``ed.sample``'s NFE counts), ``nfe`` per-sample evaluations (the sum of window sizes; what a
sequential sampler would pay N of) and ``steps`` N. ``ed.sample(..., return_info=True).stats``
holds them (updated live, so a callback sees the running totals); ``paradigms(...)`` /
``parataa(...)`` return (x, stats). During a batched evaluation the loop context's step is
the window's first step.
"""
from __future__ import annotations

import math
import warnings

import torch

from . import register
from ..sampling import sample
from .ddim import ancestral_step

_INNER_ETA = {"ddim": 0.0, "euler": 0.0, "ddpm": 1.0, "euler-ancestral": 1.0}


def chain(sigmas, inner: str = "ddim", eta: float | None = None, s_noise: float = 1.0):
    """Per-step coefficients (a, c, var, draws) of ``inner`` as x_{i+1} = x_i + a_i (x_i - D_i) + c_i z_i;
    var[j] is the η=1 ancestral noise variance of the step producing state j (var[0] = inf);
    draws[i] says whether the sequential solver draws noise at step i (to keep the same stream)."""
    if inner not in _INNER_ETA:
        raise ValueError(f"inner solver {inner!r} is not a one-step x + drift + noise map; "
                         f"choose one of {sorted(_INNER_ETA)}")
    if eta is None:
        eta = _INNER_ETA[inner]
    if inner == "euler" and eta != 0:
        raise ValueError("inner='euler' is deterministic (no churn); use inner='ddim' with eta for noise")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    a, c, var = [], [], [math.inf]
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        a.append(sigma_down / sigma - 1)
        c.append(s_noise * sigma_up)
        var.append(sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2)
    draws = [ancestral_step(float(sigmas[i]), float(sigmas[i + 1]), eta)[1] > 0 for i in range(len(sigmas) - 1)]
    return a, c, var, draws


def _noise_terms(x, c, draws, noise):
    """c_i z_i for every step, drawn up front in the sequential solver's order: [N, B, ...]."""
    out = torch.zeros(len(c), *x.shape, dtype=x.dtype, device=x.device)
    for i, (ci, d) in enumerate(zip(c, draws)):
        if d:
            out[i] = noise(x) * ci
    return out


def _batched(loop):
    """``den(x_window, σ_window, p, t)``: the loop's denoiser for p stacked batches (the bound
    condition tiled p times), ONE counted call per window, evaluated as step t."""
    tiled = {}

    def call(xw, sw, p, t):
        if p not in tiled:
            tiled[p] = loop.denoiser.tiled(p)
        loop.begin(t)
        return tiled[p](xw, sw)
    return call


def _evaluate(den, xs, sigmas, t, p, a, cz):
    """One batched evaluation of steps t..t+p-1: (drift + noise [p, B, ...], D [p, B, ...])."""
    xw = xs[t:t + p]
    sw = sigmas[t:t + p].to(xw.dtype).repeat_interleave(xw.shape[1])
    D = den(xw.flatten(0, 1), sw, p, t).reshape(xw.shape).to(xw.dtype)
    aw = torch.tensor(a[t:t + p], dtype=xw.dtype, device=xw.device).reshape(-1, *([1] * (xw.ndim - 1)))
    return aw * (xw - D) + cz[t:t + p], D


def _err(u):
    """Squared change per dimension, worst sample: [p, B, ...] -> [p]."""
    return u.reshape(u.shape[0], u.shape[1], -1).pow(2).mean(-1).amax(-1)


def _stride(err, var, t, p, tol):
    """ParaDiGMS' sliding: the window advances to just past its first unconverged state."""
    for j in range(1, p + 1):
        if err[j - 1] > tol ** 2 * var[t + j]:
            return j
    return p


def _stats(loop, name, **kw):
    """The run's counters, kept in the loop's stats and updated in place (callbacks read them live)."""
    loop.stats.update({"solver": name, **kw, "iters": 0, "nfe": 0, "calls": 0, "converged": False})
    return loop.stats


def _check(window, tol, max_iters, n):
    if window is None:
        window = n
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if max_iters is not None and (not isinstance(max_iters, int) or max_iters < 1):
        raise ValueError(f"max_iters must be a positive integer or None, got {max_iters!r}")
    return min(window, n)


def _emit(loop, xs, Dw, sigmas, t, stride, stats):
    """Report each step the window just finalised (steps t..t+stride-1)."""
    for j in range(stride):
        i = t + j
        loop.done(i, xs[i + 1], Dw[j] if Dw is not None else None, float(sigmas[i]), parallel_iter=stats["iters"],
                  nfe_parallel=stats["nfe"], calls=stats["calls"])


def _finish(loop, xs, sigmas, t, n, stats, name):
    if t < n:
        warnings.warn(f"{name}: stopped at max_iters={stats['iters']} with {n - t} of {n} steps unconverged")
        _emit(loop, xs, None, sigmas, t, n - t, stats)
    return xs[n]


def _advance(loop, xs, Dw, sigmas, t: int, p: int, p0: int, n: int, stride: int, stats: dict) -> int:
    """Slide the window by ``stride`` converged steps: states entering the window start at the
    last one, one batched call of p evaluations is counted, finished steps are reported."""
    end = min(t + stride + p0, n)
    xs[t + p + 1:end + 1] = xs[t + p]
    stats["iters"] += 1
    stats["calls"] += 1
    stats["nfe"] += p
    stats["converged"] = t + stride >= n
    _emit(loop, xs, Dw, sigmas, t, stride, stats)
    return t + stride


def _setup(loop, x, window, tol, max_iters, inner, eta, s_noise):
    """Shared start of both samplers: window, chain coefficients, noise drawn up front, the
    batched denoiser and the trajectory guess [N+1, B, ...]."""
    sigmas = loop.sigmas
    n = len(sigmas) - 1
    p0 = _check(window, tol, max_iters, n)
    a, c, var, draws = chain(sigmas, inner, eta, s_noise)
    cz = _noise_terms(x, c, draws, loop.noise)
    xs = x.unsqueeze(0).repeat(n + 1, *([1] * x.ndim))
    return sigmas, n, p0, a, var, cz, _batched(loop), xs


@register("paradigms", loop=True)
def sample_paradigms(loop, x, *, inner: str = "ddim", window: int | None = None, tol: float = 0.1,
                     max_iters: int | None = None, eta: float | None = None, s_noise: float = 1.0):
    """ParaDiGMS (Shih et al. 2023, Alg. 1): Picard iterations of ``inner`` over a sliding window
    of p steps, one batched denoiser call per iteration."""
    sigmas, n, p0, a, var, cz, den, xs = _setup(loop, x, window, tol, max_iters, inner, eta, s_noise)
    stats = _stats(loop, "paradigms", inner=inner, steps=n, window=p0)
    t = 0
    while t < n and (max_iters is None or stats["iters"] < max_iters):
        p = min(p0, n - t)
        drift, Dw = _evaluate(den, xs, sigmas, t, p, a, cz)
        new = xs[t] + drift.cumsum(0)                            # Picard update of states t+1..t+p
        stride = _stride(_err(new - xs[t + 1:t + p + 1]), var, t, p, tol)
        xs[t + 1:t + p + 1] = new
        t = _advance(loop, xs, Dw, sigmas, t, p, p0, n, stride, stats)
    return _finish(loop, xs, sigmas, t, n, stats, "paradigms")


@register("parataa", loop=True)
def sample_parataa(loop, x, *, inner: str = "ddim", window: int | None = None, tol: float = 0.1,
                   max_iters: int | None = None, history: int = 1, triangle: int | None = None,
                   lam: float = 1e-3, eta: float | None = None, s_noise: float = 1.0):
    """ParaTAA (Tang et al. 2024, Alg. 1): the order-k triangular system (k = ``triangle``,
    default the window) x_j = x_{j-k} + Σ drift solved by Triangular Anderson Acceleration with
    ``history`` m past differences (m=1 is the paper's memory size 2), Tikhonov ``lam``
    relative to the Gram diagonal."""
    sigmas, n, p0, a, var, cz, den, xs = _setup(loop, x, window, tol, max_iters, inner, eta, s_noise)
    k = p0 if triangle is None else triangle
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k:
        raise ValueError(f"triangle must be a positive integer, got {triangle!r}")
    if isinstance(history, bool) or not isinstance(history, int) or history < 0:
        raise ValueError(f"history must be a non-negative integer, got {history!r}")
    # history of iterates and residuals per state (rows outside the window stay unused)
    Xh, Fh = [], []
    seen = torch.zeros(n + 1, dtype=torch.long)                 # how many iterations each state was in a window
    stats = _stats(loop, "parataa", inner=inner, steps=n, window=p0, triangle=k, history=history)
    t = 0
    while t < n and (max_iters is None or stats["iters"] < max_iters):
        p = min(p0, n - t)
        drift, Dw = _evaluate(den, xs, sigmas, t, p, a, cz)
        cur = xs[t + 1:t + p + 1]
        # convergence test: ParaDiGMS' Picard change from the window start (ParaTAA's one-step
        # residual passes at the same τ with ~100x larger errors on the 2-D mixture test)
        stride = _stride(_err(xs[t] + drift.cumsum(0) - cur), var, t, p, tol)
        # order-k equations: x_{t+m} = x_{t+q} + Σ_{i=q}^{m-1} drift_{t+i}, q = max(0, m-k)
        S = torch.cat([torch.zeros_like(drift[:1]), drift.cumsum(0)])
        m = torch.arange(1, p + 1)
        q = (m - k).clamp(min=0)
        f = xs[t + q] + S[m] - S[q]
        F = f - cur
        seen[t + 1:t + p + 1] += 1
        upd = f.clone()
        if history > 0 and Xh:
            upd[stride:] = _taa(cur, F, Xh, Fh, t, p, seen[t + 1:t + p + 1], lam)[stride:]
        Xh.append((t, cur.clone()))
        Fh.append((t, F))
        Xh, Fh = Xh[-(history + 1):], Fh[-(history + 1):]
        xs[t + 1:t + p + 1] = upd
        t = _advance(loop, xs, Dw, sigmas, t, p, p0, n, stride, stats)
    return _finish(loop, xs, sigmas, t, n, stats, "parataa")


def paradigms(denoiser, x, sigmas, cond=None, **kwargs):
    """Run ParaDiGMS through ``ed.sample``; returns (x, stats)."""
    return _with_stats("paradigms", denoiser, x, sigmas, cond, kwargs)


def parataa(denoiser, x, sigmas, cond=None, **kwargs):
    """Run ParaTAA through ``ed.sample``; returns (x, stats)."""
    return _with_stats("parataa", denoiser, x, sigmas, cond, kwargs)


def _with_stats(name, denoiser, x, sigmas, cond, kwargs):
    res = sample(denoiser, x, sigmas, solver=name, cond=cond, return_info=True, **kwargs)
    return res.x, res.stats


def _aligned(hist, t, p, like):
    """History entries (window start s, rows for states s+1..) re-indexed to states t+1..t+p."""
    out = []
    for s, v in hist:
        w = torch.zeros_like(like)
        lo, hi = t - s, min(v.shape[0], t - s + p)              # rows of v that fall in the window
        if hi > lo:
            w[:hi - lo] = v[lo:hi]
        out.append(w)
    return torch.stack(out)                                     # [h, p, B, ...]


def _taa(cur, F, Xh, Fh, t, p, seen, lam):
    """Triangular Anderson Acceleration (Tang et al. 2024, eq. 14): for state j the least-squares
    coefficients Γ_j use only the residual rows of states ≤ j (the Jacobian is lower triangular):
    x_j ← x_j + F_j - (ΔX_j + ΔF_j) Γ_j,  Γ_j = argmin Σ_{l≤j} ||F_l - ΔF_l Γ||²."""
    X = torch.cat([_aligned(Xh, t, p, cur), cur[None]])        # [h+1, p, B, ...]
    R = torch.cat([_aligned(Fh, t, p, F), F[None]])
    dX, dF = (X[1:] - X[:-1]).double(), (R[1:] - R[:-1]).double()   # [m, p, B, ...]
    mcols = dX.shape[0]
    # column c (oldest first) is valid for state j when j was in the window for the last mcols-c+1 iterations
    valid = (torch.arange(mcols)[None, :] >= (mcols + 1 - seen)[:, None]).to(dF.dtype)   # [p, m]
    dFf, Ff = dF.reshape(*dF.shape[:3], -1), F.double().reshape(*F.shape[:2], -1)   # [m, p, B, d], [p, B, d]
    G = torch.einsum("cpbd,epbd->pbce", dFf, dFf).cumsum(0)       # [p, B, m, m], rows ≤ j summed
    r = torch.einsum("cpbd,pbd->pbc", dFf, Ff).cumsum(0)          # [p, B, m]
    v = valid[:, None, :]
    G = G * v[..., :, None] * v[..., None, :]
    r = r * v
    scale = G.diagonal(dim1=-2, dim2=-1).amax(-1, keepdim=True).clamp_min(1e-300)
    G = G + (lam * scale)[..., None] * torch.eye(mcols, dtype=G.dtype)
    gamma = torch.linalg.solve(G, r) * v                          # [p, B, m]
    corr = torch.einsum("cpbd,pbc->pbd", (dX + dF).reshape(dFf.shape), gamma).reshape(cur.shape)
    return cur + F - corr.to(cur.dtype)
