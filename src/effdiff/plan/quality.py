"""Quality measures a plan is certified with: per seed, the candidate's samples are compared with
the reference sampler's samples from the same initial noise (same labels, same solver-noise seed);
over seeds, the mean change and its 95% t-interval; a candidate holds when the interval's upper
end is within the budget.

What each one certifies (docs/planning.md):

- ``EvalFD(dataset)`` (digits, MNIST: the zoo's evaluation network, held-out data): the relative
  change of FD against held-out data in features of a network trained on neither diffusion split
  (Heusel et al. 2017), paired by seed. Certifies: the candidate's samples are, as a
  distribution, no further from real held-out data than the reference sampler's, up to the budget.
- ``DistributionChange(features)`` (any model, no data needed): the relative change of a
  distribution distance to an *independent* batch of the reference sampler's own samples (another
  seed): D(x, ref') vs D(ref, ref'), sliced Wasserstein (Rabin et al. 2011) in pixels by default,
  or FD in a user feature function. Certifies: the candidate's distribution is no further from the
  reference sampler's distribution than the reference's own sampling noise, up to the budget. Says
  nothing about real data (a reference that samples badly is matched, badly).
- ``PairedDistance()`` (any model): per-sample relative L2 distance to the reference sample from
  the same noise (an absolute number, not a change). Certifies per-sample fidelity to a
  deterministic reference (the same noise gives nearly the same image); meaningless against a
  stochastic reference (DDPM), where it measures the reference's own noise.
- ``Relative(fn)``: any user metric ``fn(x, labels) -> float`` (lower is better), as a paired
  relative change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..metrics.stats import mean_sd, pct_ci, replication, t_interval, unpaired_interval
from ..metrics import class_features, frechet_distance, frechet_from_stats, gaussian_stats, sliced_wasserstein

PLAUSIBLE = 0.1     # successive halving keeps a candidate among the plausible while P(change <= budget) >= this

__all__ = ["dataset_of", "Measure", "EvalFD", "DistributionChange", "PairedDistance", "Relative", "Quality", "Unpaired",
           "pooled_change", "for_model", "check_budget"]


@dataclass
class Batch:
    """One seed's samples: the candidate ``x``, the reference ``ref`` from the same noise, an
    independent reference batch ``other`` (another seed), the ``labels``."""
    x: torch.Tensor
    ref: torch.Tensor
    other: torch.Tensor | None
    labels: torch.Tensor | None
    seed: int


class Measure:
    """A per-seed number comparing a candidate with the reference sampler; ``relative``: it is a
    change (0 = as good as the reference), else an absolute distance."""
    name = "measure"
    relative = True
    needs_other = False

    def __call__(self, b: Batch) -> float:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class Relative(Measure):
    """Paired relative change (score(x) - score(ref)) / score(ref) of a lower-is-better
    ``score(x, labels) -> float`` (a user's own metric)."""

    def __init__(self, score: Callable, name: str = "user metric"):
        if not callable(score):
            raise TypeError(f"a metric is a callable score(x, labels) -> float, got {type(score).__name__}")
        self.score, self.name = score, name

    def __call__(self, b: Batch) -> float:
        s, r = float(self.score(b.x, b.labels)), float(self.score(b.ref, b.labels))
        if not (math.isfinite(s) and math.isfinite(r)) or r <= 0:
            raise ValueError(f"{self.name}: scores must be finite and the reference's > 0, got {s!r}, {r!r}")
        return (s - r) / r


class EvalFD(Relative):
    """FD against held-out data in the dataset's evaluation network (the bench's ``fd``)."""

    def __init__(self, dataset: str):
        from ..metrics import evaluation
        self.dataset, self.ev = dataset, evaluation(dataset)
        super().__init__(self._fd, f"FD ({dataset}-eval features, held-out data)")

    def _fd(self, x, labels=None) -> float:
        feats, _ = class_features(self.ev.net, x)
        return frechet_from_stats(*gaussian_stats(feats), *self.ev.ref_stats)


class DistributionChange(Measure):
    """Relative change of D(x, ref') against D(ref, ref'), ref' the reference's batch of another
    seed: sliced Wasserstein in ``features(x)`` (pixels by default), or FD when ``kind="fd"``."""
    needs_other = True

    def __init__(self, features: Callable | None = None, kind: str = "sw", projections: int = 256):
        if kind not in ("sw", "fd"):
            raise ValueError(f"kind must be 'sw' or 'fd', got {kind!r}")
        self.features, self.kind, self.projections = features, kind, projections
        where = "pixels" if features is None else "user features"
        self.name = f"{'sliced Wasserstein' if kind == 'sw' else 'FD'} in {where} to an independent reference batch"

    def _f(self, x):
        return (x if self.features is None else self.features(x)).reshape(len(x), -1).double()

    def _d(self, a, b) -> float:
        if self.kind == "fd":
            return frechet_distance(a, b)
        return sliced_wasserstein(a, b, self.projections, torch.Generator().manual_seed(0))

    def __call__(self, b: Batch) -> float:
        if b.other is None:
            raise ValueError("a distribution change needs an independent reference batch")
        o = self._f(b.other)
        base = self._d(self._f(b.ref), o)
        return (self._d(self._f(b.x), o) - base) / base


class PairedDistance(Measure):
    """Mean over samples of ||x_i - ref_i|| / ||ref_i|| (same initial noise)."""
    name = "paired relative L2 distance to the reference sample"
    relative = False

    def __call__(self, b: Batch) -> float:
        x, r = b.x.reshape(len(b.x), -1).double(), b.ref.reshape(len(b.ref), -1).double()
        return float(((x - r).norm(dim=1) / r.norm(dim=1).clamp_min(1e-12)).mean())


def for_model(den, metric=None) -> Measure:
    """The default measure for ``den``: ``metric`` if given (a Measure, or a callable for
    ``Relative``), FD in the evaluation network for a digits / MNIST model, else the
    reference-free distribution change in pixels."""
    if isinstance(metric, Measure):
        return metric
    if callable(metric):
        return Relative(metric)
    if metric is not None:
        raise TypeError(f"metric must be a Measure or a callable score(x, labels), got {type(metric).__name__}")
    try:
        return EvalFD(dataset_of(den))
    except (AttributeError, KeyError, ValueError, TypeError):
        return DistributionChange()


def dataset_of(den) -> str:
    """The dataset whose evaluation network scores a zoo model (its preset's ``data``; a latent
    model's decoded images; by image size for others)."""
    from ..training.presets import PRESETS
    if den.meta.get("latent"):                 # a latent model is scored on its decoded images
        return den.meta["latent"]["data"]
    preset = PRESETS.get(den.meta.get("card", {}).get("preset", ""))
    if preset is not None and preset.data in ("digits", "mnist"):
        return preset.data
    size = den.meta["model"].get("image_size")
    by_size = {8: "digits", 28: "mnist"}
    if size not in by_size:
        raise ValueError(f"cannot tell which dataset scores a {size}x{size} model; known: digits (8), mnist (28)")
    return by_size[size]


def check_budget(budget) -> float:
    """A budget as a fraction: 0.05, '5%', '+5%' (clear error for anything else)."""
    raw = budget
    if isinstance(budget, str):
        s = budget.strip().lstrip("+")
        try:
            budget = float(s[:-1]) / 100 if s.endswith("%") else float(s)
        except ValueError:
            raise ValueError(f"budget must be a number or a percentage like '5%', got {raw!r}") from None
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise TypeError(f"budget must be a number or a percentage like '5%', got {raw!r}")
    if not math.isfinite(budget) or budget < 0:
        raise ValueError(f"budget must be a finite change >= 0 (0.05 = +5%), got {raw!r}")
    if budget > 10:
        raise ValueError(f"budget {raw!r} is a +{100 * budget:.0f}% change: pass a fraction (0.05) or '5%'")
    return float(budget)


@dataclass
class Quality:
    """A measure over seeds: per-seed values, mean, 95% t-interval, and whether it holds."""
    measure: str
    values: list = field(default_factory=list)
    seeds: list = field(default_factory=list)
    relative: bool = True

    @property
    def mean(self) -> float:
        return mean_sd(self.values)[0]

    @property
    def ci(self) -> list:
        return self.interval(0.95)

    def interval(self, level: float) -> list:
        """The two-sided ``level`` t-interval of the mean ([None, None] with one seed)."""
        return t_interval(self.values, level) if len(self.values) > 1 else [None, None]

    @property
    def upper(self) -> float:
        """The interval's upper end (the point value with one seed)."""
        hi = self.ci[1]
        return self.mean if hi is None else hi

    @property
    def lower(self) -> float:
        lo = self.ci[0]
        return self.mean if lo is None else lo

    def holds(self, budget: float) -> bool:
        return bool(len(self.values) > 1 and self.upper <= budget)

    def plausible(self, budget: float, p: float = PLAUSIBLE) -> bool:
        """Whether the true change may still be within ``budget``: the budget is above the lower end of the
        one-sided ``1 - p`` interval (a mean within the budget always is). At 2-4 seeds with a per-seed spread
        of 5-9% a mean over the budget is weak evidence; successive halving demotes a candidate only when
        this fails (one seed: its value against the budget)."""
        lo = self.interval(1 - 2 * p)[0]
        return bool((self.mean if lo is None else lo) <= budget)

    def replication(self, budget: float, k_new: int | None = None) -> float | None:
        """Probability that a re-measurement on ``k_new`` new seeds (default as many) holds again
        (``metrics.stats.replication``: predictive, from these seeds' mean and spread)."""
        return replication(self.values, budget, k_new)

    def text(self) -> str:
        if self.relative:
            return pct_ci(self.mean, self.ci)
        lo, hi = self.ci
        return f"{self.mean:.4f}" + ("" if lo is None else f" [{lo:.4f}, {hi:.4f}]")

    def as_dict(self) -> dict:
        return {"measure": self.measure, "values": list(self.values), "seeds": list(self.seeds), "mean": self.mean,
                "ci": self.ci, "relative": self.relative, "text": self.text()}


def pooled_change(score: float, pool: list) -> float:
    """A candidate's score relative to the mean of the reference's pool (``Unpaired``'s per-seed value)."""
    return float(score) / (sum(pool) / len(pool)) - 1


@dataclass
class Unpaired(Quality):
    """A relative change against a *pooled* reference that draws its own noise (an author's DDPM
    loop: a seed pairs nothing): ``values`` are the candidate's per-seed scores relative to the mean
    of ``ref_scores`` (the reference's scores on a fixed pool of independent batches of the same
    size), and the interval is Welch's with the pool's spread in it (``metrics.stats.unpaired_interval``).
    One lucky reference batch moves every candidate's paired change at that seed; against a pool it
    moves the pool's mean by 1/m of that."""
    ref_scores: list = field(default_factory=list)

    def interval(self, level: float) -> list:
        return unpaired_interval(self.values, self.ref_scores, level)

    def replication(self, budget: float, k_new: int | None = None) -> float | None:
        return replication(self.values, budget, k_new, pool=self.ref_scores)

    def as_dict(self) -> dict:
        return {**super().as_dict(), "comparison": "unpaired: per-seed scores vs the mean of a pooled reference",
                "ref_scores": list(self.ref_scores)}
