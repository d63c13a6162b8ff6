"""Training losses: denoising score matching with eps / x0 / v / velocity / score targets or
EDM's preconditioned target, flow matching, sliced score matching, loss weightings and
training-time densities.

A loss samples a noise level from a *time density*, noises the data on the process, asks the
network for its parameterization's target and returns the weighted MSE per sample.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from .denoisers import Denoiser, EDMDenoiser, prediction_target, append_dims
from .process import Process, VP

Tensor = torch.Tensor


# ---- training-time densities: each returns VE-form σ [B] ------------------------------

def density_uniform(process: Process, n: int, gen: torch.Generator) -> Tensor:
    """t uniform on the process's range (integer steps on a discrete VP, as in DDPM)."""
    if getattr(process, "discrete", False):
        t = torch.randint(0, process.num_steps, (n,), generator=gen).double()
    else:
        t = process.t_min + (process.t_max - process.t_min) * torch.rand(n, generator=gen, dtype=torch.float64)
    return process.t_to_sigma(t)


def density_lognormal(process: Process, n: int, gen: torch.Generator, p_mean: float = -1.2, p_std: float = 1.2) -> Tensor:
    """ln σ ~ N(p_mean, p_std²) (Karras et al. 2022). For flow models ln σ = logit(t), so
    p_mean=0, p_std=1 is SD3's logit-normal t (Esser et al. 2024). Clipped to the process's range."""
    s = torch.exp(p_mean + p_std * torch.randn(n, generator=gen, dtype=torch.float64))
    return s.clamp(process.sigma_min, process.sigma_max)


def density_laplace(process: Process, n: int, gen: torch.Generator, mu: float = 0.0, b: float = 0.5) -> Tensor:
    """log-SNR ~ Laplace(mu, b) (Hang & Gu 2024): σ = exp(-logsnr / 2)."""
    u = torch.rand(n, generator=gen, dtype=torch.float64) - 0.5
    logsnr = mu - b * torch.sign(u) * torch.log1p(-2 * u.abs())
    return torch.exp(-logsnr / 2).clamp(process.sigma_min, process.sigma_max)


DENSITIES = {"uniform": density_uniform, "lognormal": density_lognormal, "laplace": density_laplace}


# ---- weightings: defined on the x0-space error, applied in the target's own space -------

def x0_jacobian(prediction: str, sigma: Tensor, a: Tensor, b: Tensor, da: Tensor, db: Tensor) -> Tensor:
    """|d x0 / d output| of each parameterization (see denoisers.PREDICTIONS), so that an error
    e in the network's output is an error J e in x0."""
    return {"eps": lambda: sigma, "x0": lambda: torch.ones_like(sigma), "v": lambda: b / (a * a + b * b),
            "velocity": lambda: b / (a * db - b * da), "score": lambda: sigma * b}[prediction]()


def weight(kind: str, sigma: Tensor, jac: Tensor, gamma: float = 5.0, sigma_data: float = 0.5) -> Tensor:
    """Per-sample weight of the MSE in the target's space. "none": plain target-space MSE.
    On the x0-space error, converted by J²: "min-snr" min(SNR, γ) (Hang et al. 2023, "Efficient
    Diffusion Training via Min-SNR Weighting Strategy"; SNR = 1/σ² = a²/b²), which is the paper's
    per-target form: x0 min(SNR, γ); eps min(SNR, γ)/SNR; v (VP) min(SNR, γ)/(SNR + 1);
    velocity (flow, J = t) min(SNR, γ) t²; score (J = σ b) min(SNR, γ)/SNR · b².
    "edm" λ(σ) = (σ² + σd²)/(σ σd)² (Karras et al. 2022, eq. 8 / Table 1)."""
    if kind == "none":
        return torch.ones_like(sigma)
    if kind == "min-snr":
        return (1 / sigma ** 2).clamp(max=gamma) * jac ** 2
    if kind == "edm":
        return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2 * jac ** 2
    raise ValueError(f"unknown weighting {kind!r}; known: none, min-snr, edm")


WEIGHTINGS = ("none", "min-snr", "edm")
KINDS = ("dsm", "ssm")


@dataclass
class LossConfig:
    density: str = "uniform"           # uniform | lognormal | laplace
    density_args: dict | None = None   # e.g. {"p_mean": 0.0, "p_std": 1.0}
    weighting: str = "none"            # none | min-snr | edm  (EDMDenoiser losses are weighted by their preconditioning)
    gamma: float = 5.0                 # min-SNR's γ (Hang et al. 2023 use 5)
    kind: str = "dsm"                  # dsm: denoising (regress the target) | ssm: sliced score matching (score models)
    n_projections: int = 1             # ssm: random projections per sample (Song et al. 2019 use 1)


def sliced_score_matching(net_out: Tensor, x: Tensor, v: Tensor) -> Tensor:
    """Sliced score matching with variance reduction, SSM-VR (Song et al. 2019, "Sliced Score
    Matching", eq. 8): ``½ ||s(x)||² + vᵀ ∇ₓ(vᵀ s(x))`` averaged over the projections
    ``v [B, M, ...]`` (Hutchinson's estimator of tr ∇ₓ s). ``net_out`` = s(x) must be computed
    from ``x`` with gradients. Returned ×2 and averaged over dimensions [B], so that it equals the
    denoising score-matching MSE ``||s + ε/b||²`` up to a constant per σ (same minimiser, same
    expected gradient)."""
    dims = tuple(range(1, x.ndim))
    trace = torch.zeros(x.shape[0], dtype=net_out.dtype, device=x.device)
    for k in range(v.shape[1]):
        vk = v[:, k]
        g, = torch.autograd.grad((net_out * vk).sum(), x, create_graph=True)
        trace = trace + (g * vk).sum(dims)
    return ((net_out ** 2).sum(dims) + 2 * trace / v.shape[1]) / math.prod(x.shape[1:])


def _double_backward_attention(on: bool):
    """Attention through the math kernel, whose backward is differentiable again (the fused CPU
    kernels have no double backward; sliced score matching differentiates ∇ₓ s)."""
    if not on:
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel([SDPBackend.MATH])


class DiffusionLoss:
    """Denoising loss for a wrapped network. ``loss(denoiser, x0, cond, gen) -> [B]``.

    For a ``Denoiser``: MSE between the network output and its parameterization's target
    (eps: Ho et al. 2020; v: Salimans & Ho 2022; velocity: flow matching, Lipman et al. 2023 /
    rectified flow, Liu et al. 2023; score: denoising score matching, Vincent 2011).
    For an ``EDMDenoiser``: Karras et al. 2022's loss, λ(σ) ||D(x) - x0||² with λ = 1/c_out².
    """

    def __init__(self, config: LossConfig | None = None):
        self.config = config or LossConfig()
        if self.config.density not in DENSITIES:
            raise ValueError(f"unknown time density {self.config.density!r}; known: {', '.join(DENSITIES)}")
        if self.config.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.config.weighting!r}; known: {', '.join(WEIGHTINGS)}")
        if self.config.kind not in KINDS:
            raise ValueError(f"unknown loss kind {self.config.kind!r}; known: {', '.join(KINDS)}")
        g, m = self.config.gamma, self.config.n_projections
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not (math.isfinite(g) and g > 0):
            raise ValueError(f"loss gamma (min-SNR's γ) must be a positive finite number, got {g!r}")
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"loss n_projections must be a positive integer, got {m!r}")

    def sample_sigma(self, process: Process, n: int, gen: torch.Generator) -> Tensor:
        return DENSITIES[self.config.density](process, n, gen, **(self.config.density_args or {}))

    def draw(self, denoiser, x0: Tensor, gen: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The batch's randomness: noise levels σ [B] (float64, VE form) and noise ε like ``x0``.
        Drawn for a whole (global) batch so that a data-parallel rank can take its slice."""
        gen = gen if gen is not None else torch.default_generator
        sigma = self.sample_sigma(denoiser.process, x0.shape[0], gen).to(x0.device)
        eps = torch.randn(x0.shape, generator=gen, dtype=x0.dtype).to(x0.device)
        return sigma, eps

    def draw_projections(self, x0: Tensor, gen: torch.Generator | None = None) -> Tensor | None:
        """Sliced score matching's projections ``v [B, M, ...]`` ~ N(0, I) (None for "dsm"); drawn
        after σ and ε, batch first so that a data-parallel rank can take its slice."""
        if self.config.kind != "ssm":
            return None
        gen = gen if gen is not None else torch.default_generator
        shape = (x0.shape[0], self.config.n_projections, *x0.shape[1:])
        return torch.randn(shape, generator=gen, dtype=x0.dtype).to(x0.device)

    def net_io(self, denoiser, x0: Tensor, cond, sigma: Tensor, eps: Tensor) -> tuple[tuple, Tensor]:
        """The network's inputs at (x0, σ, ε) and its regression target, for a ``Denoiser`` and the
        denoising loss ("dsm") with weighting "none": ``(net(*args) - target)² `` is this loss's
        integrand. Distillation losses feed the same ``args`` to a teacher network."""
        t, a, b, da, db = denoiser.coefficients(sigma)
        a_, b_, da_, db_ = (append_dims(v.to(x0.dtype), x0) for v in (a, b, da, db))
        args = (a_ * x0 + b_ * eps, denoiser.process.c_noise(t).to(x0.dtype), denoiser.labels(cond, x0.shape[0], x0.device))
        return args, prediction_target(denoiser.prediction, x0, eps, a_, b_, da_, db_)

    def __call__(self, denoiser, x0: Tensor, cond=None, gen: torch.Generator | None = None,
                 sigma: Tensor | None = None, eps: Tensor | None = None, proj: Tensor | None = None) -> Tensor:
        """Per-sample loss [B]; ``sigma``, ``eps`` (from ``draw``) and ``proj`` (from
        ``draw_projections``, sliced score matching only) are drawn here when not given."""
        if sigma is None or eps is None:
            sigma, eps = self.draw(denoiser, x0, gen)
        if self.config.kind == "ssm" and proj is None:
            proj = self.draw_projections(x0, gen)
        dims = tuple(range(1, x0.ndim))
        if isinstance(denoiser, EDMDenoiser):
            if self.config.kind == "ssm":
                raise ValueError("sliced score matching needs a score-prediction Denoiser, not an EDMDenoiser")
            c_skip, c_out, c_in, c_noise = denoiser.preconditioning(sigma)
            x = x0 + append_dims(sigma.to(x0.dtype), x0) * eps
            f = denoiser.net(append_dims(c_in.to(x0.dtype), x0) * x, c_noise.to(x0.dtype),
                             denoiser.labels(cond, x0.shape[0], x0.device))
            target = (x0 - append_dims(c_skip.to(x0.dtype), x0) * x) / append_dims(c_out.to(x0.dtype), x0)
            return ((f - target) ** 2).mean(dims)
        if not isinstance(denoiser, Denoiser):
            raise TypeError("DiffusionLoss needs an effdiff Denoiser or EDMDenoiser")
        t, a, b, da, db = denoiser.coefficients(sigma)
        a_, b_, da_, db_ = (append_dims(v.to(x0.dtype), x0) for v in (a, b, da, db))
        xn = a_ * x0 + b_ * eps
        if self.config.kind == "ssm":
            if denoiser.prediction != "score":
                raise ValueError(f"sliced score matching trains score-prediction models, not {denoiser.prediction!r}")
            xn = xn.detach().requires_grad_(True)
        with _double_backward_attention(self.config.kind == "ssm"):
            out = denoiser.net(xn, denoiser.process.c_noise(t).to(x0.dtype),
                               denoiser.labels(cond, x0.shape[0], x0.device))
        jac = x0_jacobian(denoiser.prediction, sigma, a, b, da, db)
        w = weight(self.config.weighting, sigma, jac, gamma=self.config.gamma).to(x0.dtype)
        if self.config.kind == "ssm":
            return w * sliced_score_matching(out, xn, proj)
        target = prediction_target(denoiser.prediction, x0, eps, a_, b_, da_, db_)
        return w * ((out - target) ** 2).mean(dims)
