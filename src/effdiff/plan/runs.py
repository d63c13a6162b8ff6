"""Running specs for the planner and for ``verify``: the seed ranges, per-sample noise and labels
shared by every candidate and the reference, cached samples with their wall time, calibrated
techniques prepared once, and an external reference sampler a user brings.

Seeds: ``effdiff.seeds`` ranges ``plan-screening`` (200-299), ``plan-selection`` (300-399),
``plan-certification`` (400-499), ``plan-verification`` (500-599, registered here), calibration
batches from ``calibration`` (12345). Seed s's independent reference batch is s + ``OTHER``.
"""
from __future__ import annotations

import math
import time

import torch

from .. import techniques as T
from ..metrics.stats import labels_for
from ..sampling import randn
from .quality import Batch, Quality, Relative, Unpaired, pooled_change
from .spec import Spec

OTHER = 50                # seed s's independent reference batch is seed s + OTHER (same range)


def _seed_ranges():
    try:
        from .. import seeds as SR
        r = {k: SR.get(f"plan-{k}").start for k in ("screening", "selection", "certification")}
        if "plan-verification" not in SR.REGISTRY:
            SR.register(SR.SeedRange("plan-verification", 500, 600, "plan verify: re-measuring a saved plan on "
                                     "seeds its search and certification never used (effdiff.plan)"))
        r["verification"] = SR.get("plan-verification").start
        r["calibration"] = SR.get("calibration").start
        return r
    except (ImportError, KeyError):     # no seed registry: the same numbers, defined here
        return {"screening": 200, "selection": 300, "certification": 400, "verification": 500, "calibration": 12345}


SEEDS = _seed_ranges()


def default_reference(den, model: str | None, quick: bool = False) -> Spec:
    """The model card's ``plan_reference`` spec if it has one, else Heun on a Karras schedule at
    ~80 NFE (~50 in quick mode): a high-accuracy deterministic solve of the model's own ODE."""
    card = (getattr(den, "meta", None) or {}).get("card", {})
    if "plan_reference" in card:
        return Spec.from_dict(card["plan_reference"])
    return Spec("heun", 25 if quick else 40, "karras")


class External:
    """A reference sampler you bring (e.g. a model author's own loop): ``fn(n, seed) -> samples``.
    It draws its own noise, so pairing with candidates is by seed, not by initial noise."""

    def __init__(self, fn, name: str):
        if not callable(fn) and fn is not None:
            raise TypeError(f"an external reference is a callable fn(n, seed) -> samples, got {type(fn).__name__}")
        self.fn, self.name = fn, name

    def label(self) -> str:
        return self.name

    def to_dict(self) -> dict:
        return {"external": self.name}


class Sampler:
    """Samples specs on (seed, n) from the same per-sample noise and labels; caches samples and
    per-run timing; prepares calibrated techniques once per (base, technique config)."""

    def __init__(self, den, cond, shape=None):
        self.den, self.cond, self.shape = den, cond, shape
        self.cache: dict = {}
        self.prepared: dict = {}
        self.sample_nfe = 0          # denoiser evaluations x samples spent, the search's own cost
        self.seconds: dict = {}      # sampling seconds per spec label (the search's cost breakdown)

    def labels(self, n: int):
        if callable(self.cond):
            return self.cond(n)
        if self.cond is None:
            return labels_for(n, getattr(self.den, "cond_classes", 0) or 0)
        c = torch.as_tensor(self.cond)
        return c.repeat(math.ceil(n / len(c)))[:n] if c.ndim else c

    def unit_noise(self, spec: Spec, n: int, seed: int):
        return spec.noise(self.den, n, seed, self.shape)

    def prepare(self, spec: Spec) -> Spec:
        """``spec`` with calibrated parts (``needs``) filled, once per base and config."""
        entries, changed = [], False
        for name, cfg in spec.techniques:
            tech = T.get(name)
            missing = [k for k in tech.needs if cfg.get(k) is None]
            if missing:
                base = spec.replace(techniques=[])
                key = (base.label(), name, repr(sorted(cfg.items())))
                if key not in self.prepared:
                    n = 32
                    sig = base.sigmas(self.den)
                    x = randn(self.unit_noise(base, n, 0).shape, seed=SEEDS["calibration"]) * float(sig[0])
                    run = T.Run(x, sig, base.solver, self.labels(n))
                    c = tech.prepare(base.denoiser(self.den), tech.make_config(dict(cfg)), run)
                    self.prepared[key] = {k: getattr(c, k) for k in tech.needs}
                cfg = {**cfg, **self.prepared[key]}
                changed = True
            entries.append((name, cfg))
        return spec.replace(techniques=entries) if changed else spec

    def images(self, spec: Spec, seed: int, n: int):
        """(images [n, ...], seconds, nfe) of ``spec`` at ``seed``."""
        key = (spec.label(), seed, n)
        if key not in self.cache and isinstance(spec, External):
            if spec.fn is None:
                raise ValueError(f"the external reference {spec.name!r} is not available here: pass reference=")
            t0 = time.perf_counter()
            x = spec.fn(n, seed)
            self.cache[key] = (x, time.perf_counter() - t0, None)
            self._spent(key[0], self.cache[key][1])
        if key not in self.cache:
            from ..latent.denoiser import images
            spec = self.prepare(spec)
            labels = self.labels(n)
            z = self.unit_noise(spec, n, seed)
            t0 = time.perf_counter()
            res = spec.sample(self.den, z, labels, seed, return_info=True)
            x = images(spec.denoiser(self.den), res.x)
            dt = time.perf_counter() - t0
            self.sample_nfe += res.nfe * n
            self.cache[key] = (x, dt, res.nfe)
            self._spent(key[0], dt)
        return self.cache[key]


    def _spent(self, label: str, dt: float) -> None:
        self.seconds[label] = self.seconds.get(label, 0.0) + dt


def score_of(sm: Sampler, spec, measure: Relative, seed: int, n: int) -> float:
    """``measure``'s own score (not a change) of ``spec``'s batch at ``seed``."""
    return float(measure.score(sm.images(spec, seed, n)[0], sm.labels(n)))


def measure_on(den, spec, reference, measure, seeds, n: int, cond=None, shape=None, sampler=None) -> Quality:
    """``measure`` of ``spec`` against ``reference`` on each of ``seeds`` (n samples each); against an
    ``External`` reference with a ``Relative`` measure, unpaired: each seed's score against the mean
    of the reference's scores on all ``seeds`` (``quality.Unpaired``)."""
    if len(seeds) < 2:
        raise ValueError("a confidence interval needs at least 2 seeds")
    sm = sampler or Sampler(den, cond, shape)
    if isinstance(reference, External) and isinstance(measure, Relative):
        pool = [score_of(sm, reference, measure, s, n) for s in seeds]
        return Unpaired(measure.name, values=[pooled_change(score_of(sm, spec, measure, s, n), pool) for s in seeds],
                        seeds=list(seeds), relative=True, ref_scores=pool)
    q = Quality(measure.name, relative=measure.relative)
    for s in seeds:
        x = sm.images(spec, s, n)[0]
        ref = sm.images(reference, s, n)[0]
        other = sm.images(reference, s + OTHER, n)[0] if measure.needs_other else None
        q.values.append(measure(Batch(x, ref, other, sm.labels(n), s)))
        q.seeds.append(s)
    return q
