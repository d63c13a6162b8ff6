"""PriorGrad (Lee et al. 2022, "PriorGrad: Improving Conditional Denoising Diffusion Models with
Data-Dependent Adaptive Prior"): diffuse towards N(μ_c, Σ_c) instead of N(0, I), with μ_c and a
diagonal Σ_c = diag(s_c²) computed per class from the training data.

Under effdiff's convention (x = x0 + σ ε, D(x, σ, c) -> x0) this is diffusion on whitened data
x0_w = (x0 - μ_c) / s_c: the network is trained as usual on x0_w, and in data space

    x = μ_c + s_c (x0_w + σ ε) = x0 + σ s_c ε          (noise with covariance σ² Σ_c)
    D(x, σ, c) = μ_c + s_c · D_w((x - μ_c) / s_c, σ, c)   (``PriorGradDenoiser``)
    x_T = μ_c + s_c σ_max ε                               (``PriorGradDenoiser.prior``)

The wrapper is a denoiser in the data space: every deterministic solver (Euler, Heun, DPM-Solver,
UniPC, ... — affine-equivariant per coordinate) follows exactly the whitened model's ODE once it
starts from ``prior(x_T)``. Two things differ from an N(0, I) model: the initial noise must go
through ``den.prior(x_T, cond)`` (a standard ``randn * σ_max`` start has the wrong per-pixel
scale), and a stochastic solver's fresh noise should be scaled by s_c too (the driver injects
N(0, I); only deterministic solvers are exact). The null class (label dropout, guidance's
unconditional branch, unconditional models) uses the statistics of the whole training set.

The export stores μ, s as tensors ``prior.mean`` / ``prior.std`` [K+1, C, H, W] beside the
network's weights, and ``"prior": {"kind": "priorgrad", ...}`` in the JSON; ``from_meta`` rebuilds
the wrapper. Nothing is pickled.
"""
from __future__ import annotations

import torch
from torch import nn

from ..kinds import register
from ..sampling import from_prior

PRIORS = ("standard", "priorgrad")
DEFAULT_MIN_STD = 0.1      # floor on s_c: pixels that never vary (digits' borders) are not divided by 0


def class_statistics(x: torch.Tensor, y: torch.Tensor | None, num_classes: int,
                     min_std: float = DEFAULT_MIN_STD) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean and standard deviation per coordinate, ``[K+1, ...]`` each (row K: all data,
    for the null class); computed in float64, returned float32; s ≥ ``min_std``."""
    x = x.double()
    rows_m, rows_s = [], []
    for c in range(num_classes):
        xc = x[y == c]
        if len(xc) < 2:
            raise ValueError(f"PriorGrad needs at least 2 training examples of class {c}, got {len(xc)}")
        rows_m.append(xc.mean(0))
        rows_s.append(xc.std(0))
    rows_m.append(x.mean(0))
    rows_s.append(x.std(0))
    mean, std = torch.stack(rows_m), torch.stack(rows_s).clamp(min=min_std)
    return mean.float(), std.float()


class Whitening(nn.Module):
    """x <-> (x - μ_c) / s_c per sample, with the row chosen by its label (null row K when the
    label is K, None, or the model is unconditional)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        if mean.shape != std.shape or mean.ndim < 2:
            raise ValueError(f"mean and std must both be [K+1, ...], got {tuple(mean.shape)} and {tuple(std.shape)}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError("PriorGrad statistics must be finite with std > 0")
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    @property
    def null_row(self) -> int:
        return self.mean.shape[0] - 1

    def rows(self, y, batch: int, device) -> torch.Tensor:
        if y is None:
            return torch.full((batch,), self.null_row, dtype=torch.long, device=device)
        y = torch.as_tensor(y, device=device).long()
        if y.ndim == 0:
            y = y.expand(batch)
        if y.shape != (batch,) or (y < 0).any() or (y > self.null_row).any():
            raise ValueError(f"class labels must be [{batch}] in [0, {self.null_row}] ({self.null_row} = null)")
        return y

    def _stats(self, x: torch.Tensor, y) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.rows(y, x.shape[0], x.device)
        return self.mean.to(x.device, x.dtype)[r], self.std.to(x.device, x.dtype)[r]

    def whiten(self, x: torch.Tensor, y) -> torch.Tensor:
        m, s = self._stats(x, y)
        return (x - m) / s

    def color(self, x: torch.Tensor, y) -> torch.Tensor:
        m, s = self._stats(x, y)
        return m + s * x


class PriorGradDenoiser(nn.Module):
    """``D(x, σ, c) = μ_c + s_c · D_w((x - μ_c) / s_c, σ, c)`` around a denoiser ``D_w`` trained on
    whitened data; ``prior(x_T, c) = μ_c + s_c x_T`` maps a standard start ``randn * σ_max``."""

    def __init__(self, denoiser: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.denoiser = denoiser
        self.whitening = Whitening(mean, std)
        self.cond_classes = int(getattr(denoiser, "cond_classes", 0))
        if self.cond_classes and self.whitening.null_row != self.cond_classes:
            raise ValueError(f"statistics have {self.whitening.null_row} class rows, the model {self.cond_classes} classes")

    # the wrapped denoiser's description, for code that inspects a zoo model
    @property
    def net(self):
        return self.denoiser.net

    @property
    def process(self):
        return self.denoiser.process

    @property
    def prediction(self):
        return self.denoiser.prediction

    @property
    def null_class(self):
        return getattr(self.denoiser, "null_class", None)

    def labels(self, cond, batch: int, device):
        return self.denoiser.labels(cond, batch, device)

    def _rows(self, cond, x):
        return self.labels(cond, x.shape[0], x.device) if self.cond_classes else None

    def prior(self, x_T: torch.Tensor, cond=None) -> torch.Tensor:
        """The data-space start: μ_c + s_c x_T for a standard start x_T = σ_max ε."""
        return self.whitening.color(x_T, self._rows(cond, x_T))

    def forward(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        rows = self._rows(cond, x)
        xw = self.whitening.whiten(x, rows)
        out = self.denoiser(xw, sigma, cond) if cond is not None else self.denoiser(xw, sigma)
        return self.whitening.color(out, rows)


start = from_prior     # the initial state for a denoiser from a standard start (its prior, if any)


def export_tensors(whitening: Whitening) -> dict[str, torch.Tensor]:
    return {"prior.mean": whitening.mean.detach().clone(), "prior.std": whitening.std.detach().clone()}


@register("prior")
def from_meta(tensors: dict, meta: dict, where: str = "model"):
    """Rebuild an exported PriorGrad model: ``prior.*`` tensors -> the wrapper, the rest -> the
    network as ``zoo.from_checkpoint`` builds it."""
    from .. import checkpoint as ckpt
    from ..models import build
    from ..denoisers import Denoiser
    from ..process import from_config
    if (meta.get("prior") or {}).get("kind") != "priorgrad":
        raise ckpt.CheckpointError(f"{where}: not a PriorGrad export (meta 'prior' is {meta.get('prior')!r})")
    if "prior.mean" not in tensors or "prior.std" not in tensors:
        raise ckpt.CheckpointError(f"{where}: PriorGrad export lacks the prior.mean / prior.std tensors")
    net = build(meta["arch"], meta["model"])
    ckpt.load_state(net, {k: v for k, v in tensors.items() if not k.startswith("prior.")}, where=where)
    net.eval().requires_grad_(False)
    inner = Denoiser(net, from_config(meta["process"]), meta["prediction"], meta.get("num_classes", 0))
    try:
        den = PriorGradDenoiser(inner, tensors["prior.mean"].float(), tensors["prior.std"].float())
    except ValueError as e:
        raise ckpt.CheckpointError(f"{where}: {e}") from None
    den.meta = meta
    return den.eval()
