"""Schedule optimisers: Align Your Steps (KLUB coordinate descent), Watson-style dynamic
programming over a candidate grid, an end-to-end fit through one solver at one step count
(``e2e``), and fitted schedules stored as JSON.

Everything works in the VE-form σ of the denoiser contract, so an AYS or DP schedule serves any
solver (an ``e2e`` one is fitted for its solver and step count). A schedule here is what
``timesteps`` returns: float64, strictly decreasing, ending in exactly 0; AYS and DP keep both ends
(σ_max, σ_min) fixed and move the σ's between them (``e2e`` may lower σ_max). Fitted schedules ship in ``effdiff/zoo/schedules/NAME.json`` and are reached as
``timesteps.get("ays:digits-unet", n, process)``, interpolated to any n; a schedule you fit is
a JSON file wherever you write it, reached as ``timesteps.get("path/to/file.json", n, process)``.

    effdiff schedules fit --model digits-unet --method ays --steps 10 --out ays-unet.json
    effdiff schedules fit --model digits-unet --method e2e --solver dpmpp-2m-unic --steps 4 --out e2e.json
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from . import timesteps
from .io import check_writable
from .aliases import alias
from .timesteps import FORMAT, check_sigmas, interpolate, load_schedule, save_schedule  # noqa: F401
from .timesteps import fitted_names as names  # noqa: F401  (the fitted-schedule files live in timesteps)

Tensor = torch.Tensor

METHODS = ("ays", "dp", "e2e")


# ---------------------------------------------------------------------------------------
# storage and interpolation
# ---------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------

def _call(denoiser, x: Tensor, sigma: Tensor, cond) -> Tensor:
    return (denoiser(x, sigma, cond) if cond is not None else denoiser(x, sigma)).double()


def _batched(denoiser, x: Tensor, sigma: Tensor, cond, chunk: int) -> Tensor:
    """D(x, σ) over a big batch in chunks (σ [B]), float64 out."""
    with torch.no_grad():
        return torch.cat([_call(denoiser, x[i:i + chunk], sigma[i:i + chunk],
                                None if cond is None else cond[i:i + chunk])
                          for i in range(0, x.shape[0], chunk)])


def _bank(data: Tensor, cond, num_samples: int, g: torch.Generator):
    """num_samples rows of data (and their cond) drawn without replacement (with, if too few)."""
    if not torch.is_tensor(data) or data.ndim < 2 or not data.is_floating_point():
        raise ValueError("data must be a float tensor of samples [N, ...]")
    if cond is not None and len(cond) != len(data):
        raise ValueError(f"cond has {len(cond)} entries for {len(data)} data samples")
    m = int(num_samples)
    if m < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    idx = torch.randperm(len(data), generator=g)[:m] if m <= len(data) else torch.randint(len(data), (m,), generator=g)
    return data[idx].double(), (None if cond is None else torch.as_tensor(cond)[idx])


def _range(denoiser, sigma_min, sigma_max):
    proc = getattr(denoiser, "process", None)
    lo = sigma_min if sigma_min is not None else getattr(proc, "sigma_min", None)
    hi = sigma_max if sigma_max is not None else getattr(proc, "sigma_max", None)
    if lo is None or hi is None:
        raise ValueError("pass sigma_min and sigma_max (the denoiser has no .process to take them from)")
    return timesteps._range(float(lo), float(hi))


def _expand(t: Tensor, k: int) -> Tensor:
    return t.unsqueeze(0).expand(k, *t.shape).reshape(k * t.shape[0], *t.shape[1:])


# ---------------------------------------------------------------------------------------
# Align Your Steps (Sabour, Fidler & Kreis 2024)
# ---------------------------------------------------------------------------------------

class KLUB:
    """Monte-Carlo KLUB of one step of the linearised SDE (Sabour et al. 2024, eq. 9-10, VE form).

    Derivation (t = σ, the EDM SDE dx = -2σ ∇log p dσ + sqrt(2σ) dw̄ with ∇log p = (D - x)/σ²):
    on a step σ_i -> σ_{i+1} the linearised SDE freezes the denoiser at D(x_{σ_i}, σ_i); the
    drifts then differ by 2 (D(x_σ, σ) - D(x_{σ_i}, σ_i)) / σ and Girsanov gives
        KLUB_i = ∫_{σ_{i+1}}^{σ_i} E ||D(x_σ, σ) - D(x_{σ_i}, σ_i)||² / σ³ dσ,
    the expectation over the true process: x0 ~ data, x_{σ_i} = x0 + σ_i ε and x_σ the same path
    at the lower level, drawn from the Brownian bridge between x0 and x_{σ_i}:
        x_σ = x0 + (σ²/σ_i²)(x_{σ_i} - x0) + σ sqrt(1 - σ²/σ_i²) ε'
    (the same joint as x_σ = x0 + σ ε, x_{σ_i} = x_σ + sqrt(σ_i² - σ²) ε', but D(x_{σ_i}, σ_i)
    no longer depends on σ, so candidates sharing σ_i share it). We draw σ log-uniformly in the
    interval (importance sampling against the 1/σ³ weight), so the estimator is
        log(σ_i/σ_{i+1}) · mean ||D(x_σ, σ) - D(x_{σ_i}, σ_i)||² / σ²   (sum over dimensions).
    One fixed bank (x0, cond, u, ε, ε') is reused for every interval and candidate (common random
    numbers), so comparing candidates is not swamped by Monte-Carlo noise and coordinate
    descent on it decreases monotonically.
    """

    def __init__(self, denoiser, data: Tensor, cond=None, num_samples: int = 32, seed: int = 0, chunk: int = 1024):
        g = torch.Generator().manual_seed(int(seed))
        self.denoiser, self.chunk = denoiser, int(chunk)
        self.x0, self.cond = _bank(data, cond, num_samples, g)
        m = self.x0.shape[0]
        self.u = torch.rand(m, generator=g, dtype=torch.float64)
        self.eps = torch.randn(self.x0.shape, generator=g, dtype=torch.float64)
        self.eps2 = torch.randn(self.x0.shape, generator=g, dtype=torch.float64)
        self.evals = 0

    def __call__(self, hi, lo) -> Tensor:
        """KLUB of the steps hi[k] -> lo[k] (float64 [K]); hi, lo: floats or [K] tensors."""
        hi, lo = torch.atleast_1d(torch.as_tensor(hi, dtype=torch.float64)), torch.atleast_1d(torch.as_tensor(lo, dtype=torch.float64))
        hi, lo = torch.broadcast_tensors(hi, lo)
        if not ((hi > lo) & (lo > 0)).all():
            raise ValueError("KLUB needs hi > lo > 0 for every step")
        k, m = len(hi), self.x0.shape[0]
        bc = (-1,) + (1,) * (self.x0.ndim - 1)
        log_w = torch.log(hi / lo)                                         # [K]
        sigma = lo[:, None] * torch.exp(self.u[None, :] * log_w[:, None])  # [K, M]
        uniq, inv = torch.unique(hi, return_inverse=True)                  # σ_i shared by candidates
        x_u = _expand(self.x0, len(uniq)) + uniq.repeat_interleave(m).view(bc) * _expand(self.eps, len(uniq))
        cond_u = None if self.cond is None else _expand(self.cond, len(uniq))
        d_u = _batched(self.denoiser, x_u, uniq.repeat_interleave(m), cond_u, self.chunk).view(len(uniq), m, *self.x0.shape[1:])
        x_h = x_u.view(len(uniq), m, *self.x0.shape[1:])[inv].reshape(k * m, *self.x0.shape[1:])
        d_h = d_u[inv].reshape(k * m, *self.x0.shape[1:])
        s, h = sigma.reshape(-1), hi[:, None].expand(k, m).reshape(-1)
        x0, eps2 = _expand(self.x0, k), _expand(self.eps2, k)
        r = (s / h).view(bc)
        x_s = x0 + r ** 2 * (x_h - x0) + s.view(bc) * torch.sqrt((1 - r ** 2).clamp_min(0)) * eps2
        cond = None if self.cond is None else _expand(self.cond, k)
        d_s = _batched(self.denoiser, x_s, s, cond, self.chunk)
        self.evals += (k + len(uniq)) * m
        per = (d_s - d_h).pow(2).reshape(k * m, -1).sum(1) / s ** 2      # [K M]
        return log_w * per.view(k, m).mean(1)

    def total(self, sigmas) -> float:
        """Summed KLUB of a schedule's steps between σ > 0 (the last jump to 0 is not scored)."""
        pos = check_sigmas(sigmas)[:-1]
        return float(self(pos[:-1], pos[1:]).sum()) if len(pos) > 1 else 0.0


def _candidates(lo: float, hi: float, cur: float, radius: float, k: int) -> Tensor:
    """k log-spaced candidates within ``radius`` (in log σ) of cur, strictly inside (lo, hi), plus cur."""
    a, b = max(math.log(lo), math.log(cur) - radius), min(math.log(hi), math.log(cur) + radius)
    grid = torch.linspace(a, b, k + 2, dtype=torch.float64)[1:-1].exp()
    grid = grid[(grid > lo) & (grid < hi)]
    return torch.cat([torch.tensor([cur], dtype=torch.float64), grid])


def ays_refine(klub: KLUB, sigmas, free=None, num_candidates: int = 8, max_sweeps: int = 6,
               tol: float = 1e-3, verbose: bool = False):
    """AYS's iterative optimisation (Sabour et al. 2024): coordinate-wise updates of
    each free σ_i to the candidate (in its neighbours' bracket) minimising
    KLUB(σ_{i-1} -> σ_i) + KLUB(σ_i -> σ_{i+1}). The candidate window shrinks by half each sweep
    (refinement) and the sweeps stop early once the total KLUB improves by less than ``tol``
    (relative). Returns (sigmas, history of total KLUB, initial first)."""
    pos = check_sigmas(sigmas)[:-1].clone()
    n = len(pos)
    free = list(range(1, n - 1)) if free is None else sorted(int(i) for i in free)
    if any(not 0 < i < n - 1 for i in free):
        raise ValueError(f"free indices must be interior (1..{n - 2}); the ends are fixed")
    if num_candidates < 1 or max_sweeps < 1:
        raise ValueError("num_candidates and max_sweeps must be >= 1")
    history = [klub.total(timesteps.append_zero(pos))]
    radius = {i: math.log(float(pos[i - 1] / pos[i + 1])) for i in free}
    for sweep in range(max_sweeps):
        for i in free:
            lo, hi, cur = float(pos[i + 1]), float(pos[i - 1]), float(pos[i])
            cand = _candidates(lo, hi, cur, radius[i], num_candidates)
            cost = klub(hi, cand) + klub(cand, lo)
            pos[i] = cand[int(torch.argmin(cost))]   # cand[0] is the current value: never worse
            radius[i] *= 0.5
        history.append(klub.total(timesteps.append_zero(pos)))
        if verbose:
            print(f"ays sweep {sweep + 1}: KLUB {history[-1]:.6g}", flush=True)
        if history[-2] - history[-1] < tol * abs(history[-2]):
            break
    return timesteps.append_zero(pos), history


def subdivide(sigmas) -> tuple[Tensor, list[int]]:
    """Double a schedule for AYS's hierarchical 10 -> 20 -> 40 refinement (Sabour et al. 2024): n steps
    (n σ's > 0) -> 2n, inserting the log-midpoint of every interval between σ's > 0 and two
    points (log-thirds) in the last one. Returns (sigmas, indices of the inserted σ's)."""
    pos = check_sigmas(sigmas)[:-1]
    if len(pos) < 2:
        raise ValueError("subdivide needs at least two σ > 0")
    out, new = [float(pos[0])], []
    lg = pos.log().tolist()
    for i in range(len(pos) - 1):
        parts = 3 if i == len(pos) - 2 else 2
        for k in range(1, parts):
            new.append(len(out))
            out.append(math.exp(lg[i] + k / parts * (lg[i + 1] - lg[i])))
        out.append(float(pos[i + 1]))
    return timesteps.append_zero(torch.tensor(out, dtype=torch.float64)), new


def ays(denoiser, data: Tensor, n: int = 10, sigma_min: float | None = None, sigma_max: float | None = None, *,
        cond=None, init: str | Tensor = "karras", num_samples: int = 32, num_candidates: int = 8,
        max_sweeps: int = 6, tol: float = 1e-3, base_steps: int = 10, seed: int = 0, chunk: int = 1024,
        return_info: bool = False, verbose: bool = False):
    """Align Your Steps (Sabour et al. 2024): an n-step σ schedule for ``denoiser`` on ``data``
    minimising the summed KLUB (see ``KLUB``) by ``ays_refine``. σ_max, σ_min stay fixed (default:
    the denoiser's process range). Hierarchical for n = base_steps · 2^k: fit base_steps, then
    subdivide and re-optimise only the new points, as the paper does for 10 -> 20 -> 40.
    ``init`` is a schedule name (``timesteps``) or a σ tensor with n steps."""
    n = timesteps._n(n)
    lo, hi = _range(denoiser, sigma_min, sigma_max)
    klub = KLUB(denoiser, data, cond, num_samples, seed, chunk)
    m, levels = n, 0     # hierarchical when n = base_steps * 2^levels
    while not torch.is_tensor(init) and m > base_steps and m % 2 == 0 and m // 2 >= base_steps:
        m, levels = m // 2, levels + 1
    if m != base_steps:
        m, levels = n, 0
    if torch.is_tensor(init):
        sig = check_sigmas(init)
        if len(sig) != n + 1:
            raise ValueError(f"init has {len(sig) - 1} steps, need {n}")
    elif init in ("karras", "exponential", "polyexponential"):
        sig = getattr(timesteps, init)(m, lo, hi)
    else:
        raise ValueError(f"init must be a σ tensor or one of karras, exponential, polyexponential; got {init!r}")
    opts = dict(num_candidates=num_candidates, max_sweeps=max_sweeps, tol=tol, verbose=verbose)
    sig, history = ays_refine(klub, sig, **opts)
    for _ in range(levels):
        sig, new = subdivide(sig)
        sig, h = ays_refine(klub, sig, free=new, **opts)
        history += h
    if return_info:
        init_n = check_sigmas(init) if torch.is_tensor(init) else getattr(timesteps, init)(n, lo, hi)
        return sig, {"klub_init": klub.total(init_n), "klub": klub.total(sig), "history": history, "nfe": klub.evals}
    return sig


# ---------------------------------------------------------------------------------------
# dynamic programming over a candidate grid (Watson et al. 2021)
# ---------------------------------------------------------------------------------------

def dp_path(cost, n_steps: int) -> list[int]:
    """Watson et al. 2021's dynamic program (there over ELBO terms): the path 0 = i_0 < i_1 <
    ... < i_n = K-1 over K candidates with exactly n_steps transitions minimising sum c[i_k, i_{k+1}].
    ``cost`` [K, K]; entries with j <= i are ignored. O(n K²) time."""
    c = torch.as_tensor(cost, dtype=torch.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 2:
        raise ValueError(f"cost must be a square [K, K] matrix with K >= 2, got {tuple(c.shape)}")
    k = c.shape[0]
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or not 1 <= n_steps <= k - 1:
        raise ValueError(f"n_steps must be an integer in [1, {k - 1}], got {n_steps!r}")
    c = torch.where(torch.ones(k, k, dtype=torch.bool).triu(1), c, torch.full_like(c, math.inf))
    if torch.isnan(c).any():
        raise ValueError("cost contains NaN")
    best = torch.full((k,), math.inf, dtype=torch.float64)
    best[0] = 0.0
    back = []
    for _ in range(n_steps):
        tot = best[:, None] + c              # [from, to]
        best, arg = tot.min(0)
        back.append(arg)
    if not math.isfinite(float(best[-1])):
        raise ValueError("no finite-cost path with that many steps")
    path = [k - 1]
    for arg in reversed(back):
        path.append(int(arg[path[-1]]))
    return path[::-1]


def ddim_cost(denoiser, data: Tensor, grid, cond=None, num_samples: int = 32, substeps: int = 4,
              solver: str = "dpmpp-2m", seed: int = 0, chunk: int = 1024) -> Tensor:
    """Transition cost c[i, j] for ``dp_path``: the error of ONE DDIM (Euler) step from grid σ_i
    to σ_j started on a reference trajectory, measured against that trajectory at σ_j and
    propagated to the output by the Gaussian gain σ_d / sqrt(σ_d² + σ_j²) (for data N(0, σ_d²)
    the ODE flow from σ_j to 0 scales errors by it; σ_d = data std):
        c[i, j] = σ_d / sqrt(σ_d² + σ_j²) · RMS(D_i + (σ_j/σ_i)(x_i - D_i) - x_j),
    with x_k the reference solve (``solver`` with ``substeps`` log-spaced steps per grid interval)
    from x0 + σ_0 ε over a few data samples. Costs K + substeps·K denoiser batches in all."""
    from .sampling import sample
    grid = torch.as_tensor(grid, dtype=torch.float64)
    if grid.ndim != 1 or len(grid) < 2 or not (grid > 0).all() or not (grid[:-1] > grid[1:]).all():
        raise ValueError("grid must be a decreasing 1-D array of σ > 0 with at least 2 entries")
    g = torch.Generator().manual_seed(int(seed))
    x0, c = _bank(data, cond, num_samples, g)
    sigma_d = float(x0.std())
    k = len(grid)
    # fine grid: substeps log-spaced steps per interval, the grid points at multiples of substeps
    w = torch.linspace(0, 1, substeps + 1, dtype=torch.float64)[:-1]
    lg = grid.log()
    fine = torch.cat([(lg[:-1, None] + w[None, :] * (lg[1:] - lg[:-1])[:, None]).reshape(-1), lg[-1:]]).exp()
    states = {0: x0 + grid[0] * torch.randn(x0.shape, generator=g, dtype=torch.float64)}

    def keep(info):
        j = int(info["i"]) + 1
        if j % substeps == 0 and j // substeps < k:
            states[j // substeps] = info["x"]

    sample(denoiser, states[0], timesteps.append_zero(fine), solver=solver, cond=c, callback=keep)
    xs = torch.stack([states[i] for i in range(k)])                         # [K, M, ...]
    dn = _batched(denoiser, xs.reshape(-1, *x0.shape[1:]), grid.repeat_interleave(len(x0)),
                  None if c is None else c.repeat(k), chunk).view(xs.shape)
    cost = torch.full((k, k), math.inf, dtype=torch.float64)
    gain = sigma_d / torch.sqrt(sigma_d ** 2 + grid ** 2)
    for i in range(k - 1):
        r = (grid[i + 1:] / grid[i]).view(-1, *([1] * x0.ndim))
        pred = dn[i] + r * (xs[i] - dn[i])                                   # [K-i-1, M, ...]
        err = (pred - xs[i + 1:]).pow(2).reshape(k - i - 1, -1).mean(1).sqrt()
        cost[i, i + 1:] = gain[i + 1:] * err
    return cost


def dp(denoiser, data: Tensor, n: int = 10, sigma_min: float | None = None, sigma_max: float | None = None, *,
       cond=None, num_points: int = 100, num_samples: int = 32, substeps: int = 4, seed: int = 0,
       chunk: int = 1024, return_info: bool = False):
    """Watson et al. 2021-style DP schedule: the n-step path (σ_max -> σ_min, then 0) through
    ``num_points`` log-spaced candidates minimising the summed ``ddim_cost`` proxy."""
    n = timesteps._n(n)
    lo, hi = _range(denoiser, sigma_min, sigma_max)
    if n == 1:
        return timesteps.append_zero(torch.tensor([hi], dtype=torch.float64))
    grid = timesteps.exponential(num_points, lo, hi)[:-1]
    cost = ddim_cost(denoiser, data, grid, cond, num_samples, substeps, seed=seed, chunk=chunk)
    path = dp_path(cost, n - 1)
    sig = timesteps.append_zero(grid[path])
    if return_info:
        return sig, {"cost": float(sum(cost[a, b] for a, b in zip(path[:-1], path[1:]))), "path": path}
    return sig


# ---------------------------------------------------------------------------------------
# end to end through one solver at one step count (DDSS / LD3's idea, derivative-free)
# ---------------------------------------------------------------------------------------

OBJECTIVES = ("data", "teacher")


def e2e(denoiser, data: Tensor, solver: str = "dpmpp-2m", n: int = 4, *, cond=None, objective: str = "data",
        reference=None, init: str = "logsnr", sigma_min: float | None = None, sigma_max: float | None = None,
        num_samples: int = 512, projections: int = 512, fit_sigma_max: bool = True, radius: float = 0.5,
        tol: float = 0.02, max_sweeps: int = 40, seed: int = 0, return_info: bool = False, progress: bool = False):
    """An n-step σ schedule fitted for ``solver`` itself: the σ's of the real solve are moved until the
    solver's samples are as close as it gets to ``objective``'s target (Watson et al. 2022's DDSS and
    Tong et al. 2025's LD3 optimise the discretisation through the sampler in the same way, by gradients;
    with n parameters a coordinate search on the real solver needs no differentiable copy of it):

    - ``"data"`` (default): the sliced 2-Wasserstein distance (``projections`` fixed directions, in the
      denoiser's sample space) between ``num_samples`` samples and as many ``data`` images; a class-
      conditional model samples with those images' labels (``cond``), so the class mix matches.
    - ``"teacher"``: LD3's target in its hard form, the mean squared distance of each sample to
      ``reference``'s sample from the same noise (``reference(x_T, cond) -> x_0``, e.g. a many-step solve).

    Each sweep tries every σ (the first one too with ``fit_sigma_max``: a solve may start lower) at
    ±``radius`` in log σ, keeping the schedule strictly decreasing and inside [σ_min, σ_max] (the
    process's range unless given), and halves the radius after a sweep without a gain, until it falls
    below ``tol``. The noise and the directions are fixed (seeded), so the objective is deterministic; the
    schedule holds for this solver at this step count (elsewhere it is only ``interpolate``d). Returns the
    σ's ending in 0 (and an info dict: the losses, sweeps, ``evaluations`` of the objective (one solve
    each) and ``nfe``, the denoiser evaluations x samples they cost)."""
    from .sampling import sample
    from .metrics import sliced_wasserstein
    from .solvers import get as get_solver
    from tqdm.auto import tqdm
    n = timesteps._n(n)
    get_solver(solver)                                  # KeyError listing the solvers
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if objective == "teacher" and not callable(reference):
        raise ValueError("objective='teacher' needs reference=, a callable (x_T, cond) -> x_0")
    lo, hi = _range(denoiser, sigma_min, sigma_max)
    g = torch.Generator().manual_seed(int(seed))
    target, c = _bank(data, cond, num_samples, g)
    target = target.to(torch.get_default_dtype())
    z = torch.randn(target.shape, generator=g)
    if isinstance(init, str):
        proc = getattr(denoiser, "process", None)
        if proc is None or sigma_min is not None or sigma_max is not None:    # log-uniform σ is logSNR-uniform
            sig = timesteps.SCHEDULES["exponential" if init == "logsnr" else init](n, sigma_min=lo, sigma_max=hi)
        else:
            sig = timesteps.get(init, n, proc)
    else:
        sig = check_sigmas(init)
    if len(sig) != n + 1:
        raise ValueError(f"init has {len(sig) - 1} steps, need {n}")
    if objective == "teacher":
        with torch.no_grad():
            want = reference(z * hi, c)

    spent = 0                                   # denoiser evaluations x samples

    def loss(logs: list[float]) -> float:
        nonlocal spent
        s = timesteps.append_zero(torch.tensor(logs, dtype=torch.float64).exp())
        with torch.no_grad():
            res = sample(denoiser, z * float(s[0]), s, solver, c, return_info=True, check_finite=False)
        x = res.x
        spent += res.nfe * len(z)
        if not torch.isfinite(x).all():
            return math.inf
        if objective == "teacher":
            return float((x - want).pow(2).flatten(1).sum(1).mean())
        return sliced_wasserstein(x, target, projections, torch.Generator().manual_seed(int(seed) + 1))

    logs = [math.log(float(v)) for v in sig[:-1]]
    best = start = loss(logs)
    evals, sweeps, history = 1, 0, [best]
    first = 0 if fit_sigma_max else 1
    with tqdm(total=max_sweeps, desc=f"e2e {solver}/{n}", disable=not progress, leave=False) as pb:
        while radius >= tol and sweeps < max_sweeps:
            sweeps += 1
            gained = False
            for i in range(first, n):
                upper = logs[i - 1] if i else math.log(hi) + 1e-12
                lower = logs[i + 1] if i + 1 < n else math.log(lo) - 1e-12
                for d in (-radius, radius):
                    v = logs[i] + d
                    if not lower < v < upper:
                        continue
                    trial = logs[:i] + [v] + logs[i + 1:]
                    f = loss(trial)
                    evals += 1
                    if f < best:
                        best, logs, gained = f, trial, True
            history.append(best)
            if not gained:
                radius /= 2
            pb.update(1)
            pb.set_postfix(loss=f"{best:.4g}", radius=f"{radius:.3g}")
    out = timesteps.append_zero(torch.tensor(logs, dtype=torch.float64).exp())
    if return_info:
        return out, {"objective": objective, "loss_init": start, "loss": best, "sweeps": sweeps,
                     "evaluations": evals, "nfe": spent, "history": history}
    return out


# ---------------------------------------------------------------------------------------
# fitting a zoo model's schedule (``effdiff schedules fit``)
# ---------------------------------------------------------------------------------------

def fit(model, out, method: str = "ays", steps: int = 10, seed: int = 0, data: Tensor | None = None,
        cond: Tensor | None = None, solver: str | None = None, **opts) -> Path:
    """Fit a schedule for a denoiser on training images ``data`` (class labels ``cond`` for a conditional
    model) and write it to ``out`` (a JSON path the caller chooses; nothing is written inside the
    installed package). ``model`` may be a shipped model's name: then it is loaded and ``data`` defaults
    to its own training split (``meta["data"]``). ``method="e2e"`` fits for one ``solver`` at ``steps``
    (``e2e``); the file records that solver."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if method == "e2e" and solver is None:
        raise ValueError("method 'e2e' fits a schedule for one solver: name it (solver= / --solver)")
    if method != "e2e" and solver is not None:
        raise ValueError(f"method {method!r} fits one schedule for every solver and takes no solver (solver= / --solver)")
    if out is None:
        raise ValueError("fit needs out=, the JSON path to write")
    path = Path(out)
    if path.suffix != ".json":
        raise ValueError(f"out must be a .json path, got {str(out)!r}")
    check_writable(path)
    torch.manual_seed(seed)
    den, name, card = _model(model)
    if data is None:
        data, cond = _training_split(den, card, name)
    if method == "e2e":
        sig, info = e2e(den, data, solver, steps, cond=cond, seed=seed, return_info=True, **opts)
    else:
        sig, info = (ays if method == "ays" else dp)(den, data, steps, cond=cond, seed=seed, return_info=True, **opts)
    meta = {"method": method, "model": name, "steps": steps, "seed": seed, "options": opts,
            "model_train_steps": card.get("card", {}).get("steps"), "process": card.get("process"),
            "data": f"{_data_name(card)}('train')" if card else "given", "info": {k: v for k, v in info.items() if k != "history"},
            "command": _command(name, path.name, method, steps, seed, solver, opts)}
    if solver:
        meta["solver"] = solver
    if method == "ays":
        karras = timesteps.karras(steps, float(sig[-2]), float(sig[0]))
        meta["info"]["klub_karras"] = KLUB(den, data, cond, opts.get("num_samples", 32), seed + 1).total(karras)
        meta["info"]["klub_heldout"] = KLUB(den, data, cond, opts.get("num_samples", 32), seed + 1).total(sig)
    return save_schedule(path, sig, meta)


def _command(name: str, out: str, method: str, steps: int, seed: int, solver: str | None, opts: dict) -> str:
    """The command that reproduces a fit: the CLI where its flags say everything, else the Python call."""
    extra = {k: v for k, v in opts.items() if k not in ("num_samples", "progress", "verbose")}
    if extra:
        args = ", ".join(f"{k}={v!r}" for k, v in {"seed": seed, "solver": solver, **opts}.items()
                         if v is not None and k not in ("progress", "verbose"))
        return (f"python -c \"from effdiff import schedule_opt as so; so.fit({name!r}, {out!r}, {method!r}, {steps}, "
                f"{args})\"")
    return (f"effdiff schedules fit --model {name} --method {method} --steps {steps} --seed {seed}"
            + (f" --solver {solver}" if solver else "")
            + (f" --samples {opts['num_samples']}" if "num_samples" in opts else "") + f" --out {out}")


def _model(model) -> tuple:
    """(denoiser, name, metadata) of a shipped model's name or of a denoiser (its ``meta`` if it has one)."""
    if isinstance(model, str):
        from . import assets, kinds
        return kinds.load(model), model, assets.card(model)
    meta = getattr(model, "meta", None) or {}
    return model, meta.get("card", {}).get("preset", type(model).__name__), meta


def _training_split(den, card: dict, name: str) -> tuple[Tensor, Tensor | None]:
    """The training images (and labels for a conditional model) the model's metadata names."""
    from . import data
    if not card:
        raise ValueError(f"fit: {name} has no metadata naming its training data; pass data=")
    x, y = data.dataset(_data_name(card), "train")
    return x, (y if getattr(den, "cond_classes", 0) else None)


_DATA_BY_SIZE = {8: "digits", 28: "mnist"}     # exports written before the trainer recorded their data


def _data_name(card: dict) -> str:
    return card.get("data") or _DATA_BY_SIZE.get(card.get("model", {}).get("image_size"), "digits")


alias(__name__, timesteps, "SCHEDULE_DIR")     # the shipped fitted schedules: timesteps.SCHEDULE_DIR
