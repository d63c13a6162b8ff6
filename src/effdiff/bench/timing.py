"""Timing you can trust: a warm-up on the full batch, then rounds in which every configuration of a
model runs once in turn (so a method and its baseline are timed interleaved, under the same
machine load), each row at least ``repeats`` times; ms per sample is the median, with its spread."""
from __future__ import annotations

from ..metrics.timing import ms_stats, rounds, timed  # noqa: F401
