"""Timing you can trust: a warm-up on the full batch, then rounds in which every configuration runs
once in turn (so a method and its baseline are timed interleaved, under the same machine load),
each at least ``repeats`` times; ms per sample is the median, with its spread. The bench and the
plan's side-by-side timing share these."""
from __future__ import annotations

import time

from .stats import mean_sd

__all__ = ["timed", "rounds", "ms_stats"]


def timed(fn, *args):
    """(result, seconds) of one call."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def rounds(seeds: list[int], repeats: int) -> list[int]:
    """The seed of each timed round: every seed once, then again cyclically up to ``repeats`` rounds."""
    return [seeds[r % len(seeds)] for r in range(max(len(seeds), repeats))]


def ms_stats(times: list[float], n: int) -> dict:
    """Median ms per sample, its sd over runs, and every run (ms per sample)."""
    ms = [1000 * t / n for t in times]
    return {"ms_per_sample": sorted(ms)[len(ms) // 2], "ms_sd": mean_sd(ms)[1], "ms_runs": ms, "timed_runs": len(ms)}
