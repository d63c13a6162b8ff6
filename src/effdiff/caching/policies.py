"""When to compute: policies read the loop context (step index, steps, stage), never timesteps."""
from __future__ import annotations

import math

from ..context import LoopContext


class StepSet:
    """Compute at the steps in ``steps`` (all stages of them), reuse elsewhere. ``steps`` is a
    set of step indices, or a callable (num_steps) -> set, resolved per generation."""

    def __init__(self, steps):
        self.steps = steps
        self._resolved: dict[int | None, frozenset[int]] = {}   # num_steps -> steps (thread-safe)

    def full_steps(self, num_steps: int | None) -> frozenset[int]:
        if not callable(self.steps):
            return frozenset(self.steps)
        got = self._resolved.get(num_steps)
        if got is None:
            got = self._resolved.setdefault(num_steps, frozenset(self.steps(num_steps)))
        return got

    def __call__(self, ctx: LoopContext, site: str = "") -> bool:
        return ctx.step in self.full_steps(ctx.num_steps)


def every(n: int) -> StepSet:
    """Uniform interval: compute at steps 0, n, 2n, ... (DeepCache's uniform N, FORA's N)."""
    if n < 1:
        raise ValueError(f"the caching interval must be >= 1, got {n}")
    return StepSet(lambda num_steps: range(0, num_steps or 10 ** 6, n))


def window_steps(num_steps: int, n: int, start: int, stop: int) -> set[int]:
    """Steps to compute when reuse is allowed only inside ``[start, stop)``: every step outside,
    and ``start, start + n, ...`` inside (Δ-DiT's stage windows)."""
    if n < 1:
        raise ValueError(f"the caching interval must be >= 1, got {n}")
    start, stop = max(0, start), min(num_steps, stop)
    return set(range(0, start)) | set(range(start, stop, n)) | set(range(max(start, stop), num_steps))


class SiteSteps:
    """Per-site step sets: compute ``site`` at the steps in ``schedule[site]`` (all stages),
    reuse elsewhere; sites not in the schedule always compute (block caching's schedule)."""

    def __init__(self, schedule, num_steps: int | None = None):
        self.schedule = {site: set(steps) for site, steps in schedule.items()}
        self.num_steps = num_steps

    def __call__(self, ctx: LoopContext, site: str = "") -> bool:
        if self.num_steps is not None and ctx.num_steps != self.num_steps:
            raise ValueError(f"this cache schedule was calibrated for {self.num_steps} steps, "
                             f"the sampler runs {ctx.num_steps}; calibrate again for this schedule")
        steps = self.schedule.get(site)
        return steps is None or ctx.step in steps


def nonuniform_steps(num_steps: int, num_full: int, center: int | None = None, power: float = 1.4) -> list[int]:
    """DeepCache's non-uniform schedule (Ma et al. 2024, §3.3): full steps denser around a center
    step, spaced by a power law on either side; always includes step 0."""
    if not 1 <= num_full <= num_steps:
        raise ValueError(f"need 1 <= num_full <= num_steps, got {num_full}, {num_steps}")
    center = num_steps // 3 if center is None else center
    p = power
    while p >= 1.0:
        lo, hi = -(center ** (1 / p)), (num_steps - 1 - center) ** (1 / p)
        xs = [lo + (hi - lo) * k / num_full for k in range(num_full + 1)]
        idx = sorted({0} | {int(round(center + math.copysign(abs(v) ** p, v))) for v in xs})
        idx = [i for i in idx if 0 <= i < num_steps]
        if len(idx) >= num_full:
            return idx[:num_full] if len(idx) > num_full else idx
        p -= 0.02
    return sorted({round(k * (num_steps - 1) / max(1, num_full - 1)) for k in range(num_full)})
