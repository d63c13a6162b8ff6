"""Per-seed numbers to row statistics: mean and sd over seeds, paired relative changes with a 95%
t-interval over seeds, rounding to what the spread supports, class-balanced labels. The library
(plan certification) and the bench (rows, tables) share them."""
from __future__ import annotations

import math

import torch

__all__ = ["mean_sd", "t_interval", "replication", "certification_power", "seeds_to_certify", "unpaired_interval",
           "welch_df", "paired_change", "decimals", "pm", "pct_ci", "labels_for"]


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    v = [float(x) for x in values]
    m = sum(v) / len(v)
    return m, (math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0)


def t_interval(values, level: float = 0.95) -> list[float | None]:
    """Two-sided t confidence interval of the mean of ``values`` ([None, None] for one value)."""
    from scipy.stats import t
    m, sd = mean_sd(values)
    if len(values) < 2:
        return [None, None]
    half = t.ppf(0.5 + level / 2, len(values) - 1) * sd / math.sqrt(len(values))
    return [m - half, m + half]


def welch_df(a: float, ka: int, b: float, kb: int) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of two variance terms ``a`` (from ``ka``
    values) and ``b`` (from ``kb``)."""
    den = (a * a / (ka - 1) if ka > 1 else 0.0) + (b * b / (kb - 1) if kb > 1 else 0.0)
    return (a + b) ** 2 / den if den > 0 else float("inf")


def pool_term(mean: float, ref_scores) -> tuple[float, int]:
    """The variance a pooled reference adds to a mean relative change ``mean`` against the pool's mean
    (``1 + mean`` is the candidate's mean over the pool's): (1 + mean)^2 (sd_r / mean_r)^2 / m by the
    delta method, and m, the pool's size."""
    rm, rsd = mean_sd(ref_scores)
    return (1 + mean) ** 2 * (rsd / rm) ** 2 / len(ref_scores), len(ref_scores)


def unpaired_interval(values, ref_scores, level: float = 0.95) -> list[float | None]:
    """Welch interval of a relative change against a *pooled* reference: ``values`` are per-seed
    relative changes c_s / mean(ref) - 1 of a candidate's scores, ``ref_scores`` the reference's own
    scores on independent batches (a reference that draws its own noise pairs nothing with a seed).
    The half-width combines the candidate's spread over seeds and the pool's (delta method), with
    Welch-Satterthwaite degrees of freedom. [None, None] with fewer than two of either."""
    from scipy.stats import t
    k = len(values)
    if k < 2 or len(ref_scores) < 2:
        return [None, None]
    m, sd = mean_sd(values)
    a = sd * sd / k
    b, mr = pool_term(m, ref_scores)
    half = t.ppf(0.5 + level / 2, welch_df(a, k, b, mr)) * math.sqrt(a + b)
    return [m - half, m + half]


def replication(values, bound: float, k_new: int | None = None, level: float = 0.95, pool=None) -> float | None:
    """Predictive probability that a new measurement on ``k_new`` seeds (default: as many) again has
    its t-interval's upper end at most ``bound`` (Goodman 1992's replication probability; the
    "predictive power" of sample-size re-estimation, Spiegelhalter et al. 1986). With a flat prior the
    true mean is N(m, s^2/k) given these ``values``, so the new mean is N(m, s^2/k + s^2/k'); the new
    interval holds when that mean is below ``bound - t s / sqrt(k')`` (s taken as known). ``pool``:
    the reference scores of an unpaired comparison (``unpaired_interval``), re-used by the
    replication, so its term widens the new interval but does not move the new mean. None with
    fewer than two values; 1 or 0 when every value is identical."""
    from scipy.stats import norm, t
    k = len(values)
    if k < 2:
        return None
    k_new = k if k_new is None else int(k_new)
    if k_new < 2:
        raise ValueError(f"a replication needs at least 2 seeds, got {k_new}")
    m, sd = mean_sd(values)
    a = sd * sd / k_new
    b, mr = pool_term(m, pool) if pool is not None and len(pool) > 1 else (0.0, 1)
    margin = bound - m - t.ppf(0.5 + level / 2, welch_df(a, k_new, b, mr)) * math.sqrt(a + b)
    if sd == 0:
        return float(margin >= 0)
    return float(norm.cdf(margin / (sd * math.sqrt(1 / k + 1 / k_new))))


def certification_power(values, bound: float, k_new: int, replicate: float | None = 0.9,
                        level: float = 0.95) -> float | None:
    """Predictive probability that a certification on ``k_new`` new seeds passes the planner's rule: its
    t-interval's upper end at most ``bound`` and, with ``replicate`` set, its own replication
    probability (``replication``) at least ``replicate`` (without the rule's one extension, which can
    only help). The second condition holds when the new mean is a further z s sqrt(2 / k_new) below
    ``bound`` (z: the ``replicate`` quantile, s taken as known), so this is ``replication`` against that
    lower bound. None with fewer than two values."""
    from scipy.stats import norm
    if len(values) < 2:
        return None
    if k_new < 2:
        raise ValueError(f"a certification needs at least 2 seeds, got {k_new}")
    z = norm.ppf(replicate) if replicate is not None else 0.0
    return replication(values, bound - z * mean_sd(values)[1] * math.sqrt(2 / k_new), k_new, level)


def seeds_to_certify(values, bound: float, power: float = 0.8, replicate: float | None = 0.9,
                     k_max: int = 400) -> int | None:
    """The fewest new seeds (2..``k_max``) on which a certification would pass with predictive
    probability >= ``power`` (``certification_power``), from ``values`` measured on other seeds;
    None when no count up to ``k_max`` does (a mean too near or over ``bound`` for its spread)."""
    for k_new in range(2, k_max + 1):
        p = certification_power(values, bound, k_new, replicate)
        if p is not None and p >= power:
            return k_new
    return None


def paired_change(fd: list[float], base: list[float]) -> tuple[float, list]:
    """Relative change (fd_s - base_s) / base_s paired by seed: mean and 95% t-interval over seeds."""
    rel = [(a - b) / b for a, b in zip(fd, base)]
    return mean_sd(rel)[0], t_interval(rel)


def decimals(sd: float | None, floor: int = 0, cap: int = 4) -> int:
    """Decimal places that keep the sd's first significant digit (two if it is a 1)."""
    if not sd or not math.isfinite(sd) or sd <= 0:
        return cap
    d = -math.floor(math.log10(sd))
    lead = sd * 10 ** d
    return max(floor, min(cap, d + (1 if math.floor(lead) == 1 else 0)))


def pm(mean: float, sd: float | None, cap: int = 4) -> str:
    """'mean ± sd' rounded to the spread."""
    d = decimals(sd, cap=cap)
    return f"{mean:.{d}f}" if not sd else f"{mean:.{d}f} ± {sd:.{d}f}"


def ci_text(mean: float, ci, digits: int = 3, sign: str = "+") -> str:
    """'mean [lo, hi]' at ``digits`` decimals (``sign`` "+": signed, for a change; "": a ratio); the mean
    alone when there is no interval."""
    if ci is None or ci[0] is None:
        return f"{mean:{sign}.{digits}f}"
    return f"{mean:{sign}.{digits}f} [{ci[0]:{sign}.{digits}f}, {ci[1]:{sign}.{digits}f}]"


def pct_ci(change: float, ci) -> str:
    """'+x% [lo, hi]' with the interval's precision."""
    if ci is None or ci[0] is None:
        return f"{100 * change:+.1f}%"
    d = decimals((ci[1] - ci[0]) / 4 * 100, cap=1)
    return f"{100 * change:+.{d}f}% [{100 * ci[0]:+.{d}f}, {100 * ci[1]:+.{d}f}]"


def labels_for(n: int, num_classes: int) -> torch.Tensor | None:
    """Class-balanced labels 0, 1, ..., K-1, 0, ... (None for an unconditional model): ``data.class_labels``."""
    from ..data import class_labels
    return class_labels(n, num_classes)
