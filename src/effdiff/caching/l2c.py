"""Learning-to-Cache (Ma et al. 2024, "Learning-to-Cache: Accelerating Diffusion Transformer via
Layer Caching"): for one sampler and step count, learn a router β[step, layer] ∈ [0, 1] saying
which DiT layers to recompute at which step and which to take from the previous step's cache.

As in the paper, steps alternate: even steps compute every layer ("full steps"), odd steps are
"cache steps" whose layers the router may take from the full step just before, so a cache is
never more than one step old. Training (paper §3.2-3.3) relaxes the choice to an interpolation:
a layer contributes ``β·fresh + (1-β)·cached``. Only the router trains (the model is frozen),
against the full-compute teacher's output at each cache step plus a sparsity regulariser
``λ·mean(β)``; teacher forcing is exact, since the teacher trajectory of ``ed.sample`` supplies the
cache step's input, the previous step's layer outputs and the target. At inference the router is
thresholded: at a cache step, compute a layer iff ``β > threshold``; reuse goes through
``SiteCache``.

A "layer" is a DiT block (``granularity="block"``: its residual ``block(x) - x`` is cached, so the
current input still flows through) or, as in the paper, each block's attention and MLP
(``"sublayer"``: outputs before the adaLN gate, re-gated with the current step's conditioning).

    router = train_l2c_router(den, steps=20, solver="ddim")
    router.save("l2c-ddim20")
    with apply_l2c(den, L2CConfig(Router.load("l2c-ddim20"), threshold=0.5)):
        x = ed.sample(den, x, sigmas, solver="ddim", cond=labels)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .. import checkpoint as ckpt
from ..sites import dit_blocks, kind, network, sublayer
from ..context import current_context
from ..hooks import CacheStats, CacheStore, Handle, ModelHook, SiteCache, attach
from ..sampling import randn, sample
from ..seeds import ROUTERS     # router trajectories off the bench's noise (issue 24)
from ..techniques import Run, Technique, register
from .block_caching import block_sites
from .policies import SiteSteps

_FORMAT = "effdiff-l2c-router-1"


def l2c_sites(model, granularity: str = "block") -> list[tuple[str, torch.nn.Module, str]]:
    """(site, module, cache mode) of the routable layers of a DiT, in call order."""
    blocks = dit_blocks(model, "Learning-to-Cache")
    if granularity == "block":
        return block_sites(model)
    if granularity == "sublayer":
        return [(f"blocks.{i}.{p}", sublayer(b, p), "output") for i, b in enumerate(blocks) for p in ("attn", "mlp")]
    raise ValueError(f"granularity must be 'block' or 'sublayer', got {granularity!r}")


def cache_steps(num_steps: int) -> list[int]:
    """The steps the router decides (odd steps); the others compute every layer."""
    return list(range(1, num_steps, 2))


@dataclass
class Router:
    """β = sigmoid(logits), logits [len(cache_steps(num_steps)), num_layers]; valid for
    ``solver`` at ``num_steps`` steps."""
    logits: torch.Tensor
    sites: list[str]
    solver: str
    num_steps: int
    granularity: str = "block"

    def __post_init__(self):
        if tuple(self.logits.shape) != (len(cache_steps(self.num_steps)), len(self.sites)):
            raise ValueError(f"router logits {tuple(self.logits.shape)} do not match {self.num_steps} steps "
                             f"({len(cache_steps(self.num_steps))} cache steps) x {len(self.sites)} layers")

    @property
    def beta(self) -> torch.Tensor:
        return torch.sigmoid(self.logits.double())

    def compute_mask(self, threshold: float) -> torch.Tensor:
        """bool [num_steps, num_layers]: at cache steps compute iff β > threshold; else compute."""
        m = torch.ones(self.num_steps, len(self.sites), dtype=torch.bool)
        m[cache_steps(self.num_steps)] = self.beta > threshold
        return m

    def skip_fraction(self, threshold: float) -> float:
        """Fraction of (step, layer) evaluations reused at ``threshold``."""
        return 1.0 - self.compute_mask(threshold).double().mean().item()

    def threshold_for(self, skip_fraction: float) -> float:
        """The threshold that reuses (about) ``skip_fraction`` of all (step, layer) pairs."""
        b = self.beta.flatten().sort().values
        k = min(len(b), round(skip_fraction * self.num_steps * len(self.sites)))
        return -1.0 if k == 0 else float(b[k - 1])

    def schedule(self, threshold: float) -> dict[str, list[int]]:
        """site -> the steps that compute it (the form ``SiteSteps`` takes)."""
        m = self.compute_mask(threshold)
        return {s: m[:, k].nonzero().flatten().tolist() for k, s in enumerate(self.sites)}

    def save(self, path) -> None:
        ckpt.save(path, {"logits": self.logits.float()},
                  {"format": _FORMAT, "sites": self.sites, "solver": self.solver, "granularity": self.granularity,
                   "num_steps": self.num_steps})

    @classmethod
    def load(cls, path) -> "Router":
        t, meta = ckpt.load(path)
        if meta.get("format") != _FORMAT or "logits" not in t:
            raise ckpt.CheckpointError(f"{path}: not a Learning-to-Cache router ({meta.get('format')!r})")
        try:
            return cls(t["logits"], list(meta["sites"]), meta["solver"], int(meta["num_steps"]), meta["granularity"])
        except (KeyError, ValueError) as e:
            raise ckpt.CheckpointError(f"{path}: damaged router: {e}") from None


@dataclass
class L2CConfig:
    """router: the trained ``Router`` (``train_l2c_router`` or ``Router.load``); threshold: at a
    cache step, a layer is recomputed iff its β > threshold (0 computes everything)."""
    router: Router | None = None
    threshold: float = 0.5


def apply_l2c(model, config: L2CConfig) -> Handle:
    """Reuse each layer at the steps where ``β <= threshold`` (``SiteCache`` over the router's
    schedule). The sampler must run ``router.num_steps`` steps. ``stats``: computed / reused."""
    if not isinstance(config, L2CConfig):
        raise TypeError(f"apply_l2c takes an L2CConfig(router=..., threshold=...), got {type(config).__name__}")
    router = config.router
    if router is None:
        raise ValueError("L2CConfig.router is empty: train one with train_l2c_router(den, ...) or Router.load(path)")
    sites = l2c_sites(model, router.granularity)
    if [s for s, _, _ in sites] != router.sites:
        raise ValueError(f"this router was trained for layers {router.sites[:3]}... ({len(router.sites)}), "
                         f"the model has {len(sites)} {router.granularity} layers")
    policy, stats = SiteSteps(router.schedule(config.threshold), router.num_steps), CacheStats()
    store = CacheStore(stats)
    return attach("l2c", [(m, SiteCache(site, store, policy, mode, stats)) for site, m, mode in sites], store, stats)


def prepare_l2c(model, config: L2CConfig, run: Run, num_samples: int = 32, iters: int = 200, **train) -> L2CConfig:
    """Train the router for ``run``'s solver and σ schedule (the technique registry's prepare step)."""
    router = train_l2c_router(model, sigmas=run.sigmas, solver=run.solver, num_samples=num_samples, iters=iters,
                              shape=tuple(run.x.shape[1:]), **train)
    return dataclasses.replace(config, router=router)


# ------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------

class _Record(ModelHook):
    """Teacher run: keep each layer's value (residual or output) at stage 0 of every step."""

    def __init__(self, mode: str, out: list):
        self.mode, self.out = mode, out

    def __call__(self, module, call_next, *args, **kwargs):
        y = call_next(*args, **kwargs)
        ctx = current_context()
        if ctx is not None and ctx.stage == 0:
            self.out.append((y - args[0] if self.mode == "residual" else y).detach())
        return y


class _Mix(ModelHook):
    """Training: the layer's value is ``β·fresh + (1-β)·cached`` (β per sample: its step's)."""

    def __init__(self, site: str, k: int, mode: str, batch: dict):
        self.site, self.k, self.mode, self.batch = site, k, mode, batch

    def __call__(self, module, call_next, *args, **kwargs):
        x = args[0]
        y = call_next(*args, **kwargs)
        fresh = y - x if self.mode == "residual" else y
        b = self.batch["beta"][:, self.k].view(-1, *[1] * (fresh.ndim - 1)).to(fresh.dtype)
        v = b * fresh + (1 - b) * self.batch["cache"][self.site]
        return x + v if self.mode == "residual" else v


@dataclass
class Teacher:
    """Full-compute runs of ``ed.sample``, per step s (stage 0): the denoiser's input x [S, n, ...],
    σ [S, n] and output y [S, n, ...], each site's value v[site] [S, n, ...], labels cond [n], and
    w [S], the weight of D in a DDIM update of the process's state x_{s+1}: (1 - σ_{s+1}/σ_s)
    in VE form, times α_{s+1} in the process's own (VP / flow) scaling, where the paper matches."""
    x: torch.Tensor
    sigma: torch.Tensor
    y: torch.Tensor
    v: dict
    cond: torch.Tensor | None
    w: torch.Tensor


@torch.no_grad()
def teacher(den, sites, sigmas, solver: str, n: int, seed: int = 0, shape=None) -> Teacher:
    """Record ``n`` full-compute generations (noise and labels from ``seed``) at ``sites``; ``shape``: one
    sample's shape (default: the network's square image, ``config.image_size``; a clip [C, T, H, W] for video)."""
    cfg = network(den).config
    shape = tuple(shape) if shape is not None else (cfg.in_channels, cfg.image_size, cfg.image_size)
    g = torch.Generator().manual_seed(seed)
    k = getattr(den, "cond_classes", 0)
    cond = torch.randint(0, k, (n,), generator=g) if k else None
    xs, sig, outs, vals = [], [], [], {s: [] for s, _, _ in sites}

    def recording(x, sigma, c=None):
        y = den(x, sigma, c)
        if current_context().stage == 0:
            xs.append(x), sig.append(sigma), outs.append(y)
        return y

    with attach("l2c-record", [(m, _Record(mode, vals[s])) for s, m, mode in sites]):
        x = randn((n, *shape), seed=seed) * sigmas[0].float()
        sample(recording, x, sigmas, solver=solver, cond=cond, seed=seed)
    sg = torch.as_tensor(sigmas, dtype=torch.float64)
    w = (den.process.alpha(den.process.sigma_to_t(sg[1:])) * (1 - sg[1:] / sg[:-1])).float()
    return Teacher(torch.stack(xs), torch.stack(sig), torch.stack(outs), {s: torch.stack(v) for s, v in vals.items()},
                   cond, w)


class _Student:
    """The DiT with every layer mixing ``β·fresh + (1-β)·cached`` (``_Mix`` hooks)."""

    def __init__(self, den, sites):
        self.den, self.sites, self.batch = den, sites, {}
        self.handle = attach("l2c-train", [(m, _Mix(s, k, mode, self.batch)) for k, (s, m, mode) in enumerate(sites)])

    def error(self, t: Teacher, step, idx, beta):
        """w_s² · mean squared error of D at (cache step, sample) pairs ``step``, ``idx`` [B]."""
        self.batch["beta"] = beta                                            # [B, L]
        self.batch["cache"] = {s: t.v[s][step - 1, idx] for s, _, _ in self.sites}  # previous step
        out = self.den(t.x[step, idx], t.sigma[step, idx], None if t.cond is None else t.cond[idx])
        return t.w[step] ** 2 * (out - t.y[step, idx]).flatten(1).pow(2).mean(1)  # [B]

    @torch.no_grad()
    def loss(self, t: Teacher, beta_rows) -> float:
        """Mean error over every sample and cache step; ``beta_rows`` [cache steps, L]."""
        n, steps = t.x.shape[1], cache_steps(t.x.shape[0])
        return sum(self.error(t, torch.full((n,), s), torch.arange(n), beta_rows[j].float().expand(n, -1)).mean()
                   for j, s in enumerate(steps)).item() / len(steps)

    def remove(self):
        self.handle.remove()


def l2c_loss(den, router: Router, threshold: float | None = None, *, sigmas=None, num_samples: int = 32,
             seed: int = ROUTERS.start + 1, shape=None) -> float:
    """The paper's matching objective, relative to all-reuse (1 = reuse every layer at every cache
    step, 0 = exact), for ``router`` thresholded at ``threshold`` (soft β if None), on fresh
    teacher trajectories (``seed``)."""
    from ..timesteps import uniform_t
    sigmas = uniform_t(router.num_steps, den.process) if sigmas is None else sigmas
    sites = l2c_sites(den, router.granularity)
    t = teacher(den, sites, sigmas, router.solver, num_samples, seed, shape)
    beta = router.beta if threshold is None else router.compute_mask(threshold)[cache_steps(router.num_steps)]
    student = _Student(den, sites)
    try:
        return student.loss(t, beta) / max(student.loss(t, torch.zeros_like(beta)), 1e-20)
    finally:
        student.remove()


def train_l2c_router(den, steps: int = 20, solver: str = "ddim", *, sigmas=None, granularity: str = "block",
                     num_samples: int = 64, iters: int = 300, batch_size: int = 32, lr: float = 0.1,
                     sparsity: float = 0.05, init: float = 2.0, seed: int = ROUTERS.start,
                     log=None, shape=None) -> Router:
    """Learn a router for ``solver`` over ``sigmas`` (default ``uniform_t(steps)``) on a frozen DiT
    denoiser ``den``: ``iters`` Adam steps on random (sample, cache step s) pairs of
    ``num_samples`` teacher trajectories (random labels). Loss: the mean of ``w_s² ||D_β(x_s) -
    D(x_s)||²`` (see ``Teacher``) relative to its all-reuse value, so λ is scale-free, plus
    ``sparsity · mean(β)``. β starts at sigmoid(init). ``log(it, match, mean_beta)`` every 50 its. ``shape``: one
    sample's shape (``teacher``; the registry's prepare step passes its run's)."""
    from ..timesteps import uniform_t
    sigmas = uniform_t(steps, den.process) if sigmas is None else sigmas
    S, sites = len(sigmas) - 1, l2c_sites(den, granularity)
    t = teacher(den, sites, sigmas, solver, num_samples, seed, shape)
    steps_c = torch.tensor(cache_steps(S))
    logits = torch.full((len(steps_c), len(sites)), float(init), requires_grad=True)
    opt = torch.optim.Adam([logits], lr=lr)
    g = torch.Generator().manual_seed(seed + 1)
    student = _Student(den, sites)
    try:
        scale = max(student.loss(t, torch.zeros(len(steps_c), len(sites))), 1e-20)
        with torch.enable_grad():
            for it in range(iters):
                j = torch.randint(0, len(steps_c), (batch_size,), generator=g)
                idx = torch.randint(0, num_samples, (batch_size,), generator=g)
                beta = torch.sigmoid(logits)
                match = student.error(t, steps_c[j], idx, beta[j]).mean() / scale
                loss = match + sparsity * beta.mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                if log is not None and it % 50 == 0:
                    log(it, match.item(), beta.mean().item())
    finally:
        student.remove()
    return Router(logits.detach().clone(), [s for s, _, _ in sites], solver, S, granularity)


def _check(model) -> str | None:
    return None if kind(model) == "dit" else "needs a transformer with .blocks"


register(Technique("l2c", "caching", L2CConfig, apply_l2c, _check, needs=("router",), prepare_fn=prepare_l2c,
                   exact=lambda n: L2CConfig(threshold=0.0), eager=lambda n: L2CConfig(threshold=1.0),
                   paper="Ma et al. 2024, Learning-to-Cache"))
