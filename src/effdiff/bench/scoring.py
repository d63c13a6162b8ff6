"""Per-seed scores to row statistics: mean and sd over seeds, paired relative changes with a 95%
t-interval over seeds, and rounding to what the spread supports."""
from __future__ import annotations

from ..plan.quality import dataset_of  # noqa: F401  (the plan's certification needs it too)
from ..metrics.stats import decimals, labels_for, mean_sd, paired_change, pct_ci, pm, t_interval  # noqa: F401

# the per-seed numbers of metrics.score a row reports (mean, and sd as NAME_sd)
ROW_METRICS = ("fd", "fd_pixel", "fd_per_class", "class_acc", "precision", "recall", "mem_asymmetry",
               "mem_asymmetry_real", "mem_copy_fraction", "mem_copy_fraction_real", "mem_closer_than_p5")
REAL_METRICS = ("fd", "fd_pixel", "fd_per_class", "class_acc", "precision", "recall")


def summarize(per_seed: list[dict], keys=ROW_METRICS) -> dict:
    """{key: mean, key_sd: sd} over the seeds' score dicts, for the keys every seed has."""
    out = {}
    for k in keys:
        vals = [q[k] for q in per_seed if q.get(k) is not None]
        if len(vals) == len(per_seed):
            out[k], out[f"{k}_sd"] = mean_sd(vals)
    return out
