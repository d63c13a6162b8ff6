"""Running specs for the planner and for ``verify``: the seed ranges, per-sample noise and labels
shared by every candidate and the reference, cached samples with their wall time, calibrated
techniques prepared once, and an external reference sampler a user brings.

Seeds: ``effdiff.seeds`` ranges ``plan-screening`` (200-299), ``plan-selection`` (300-399),
``plan-certification`` (400-499), ``plan-verification`` (500-599, registered here), calibration
batches from ``calibration`` (12345). Seed s's independent reference batch is s + ``OTHER``, wrapped
around inside s's range (``other_seed``).
"""
from __future__ import annotations

import math
import os
import threading
import time

import torch

from .. import seeds as SR
from .. import techniques as T
from ..metrics.stats import labels_for
from ..sampling import randn
from .quality import Batch, Quality, Relative, Unpaired, pooled_change
from .spec import Spec

OTHER = 50                # seed s's independent reference batch is seed s + OTHER, wrapped inside s's range (other_seed)


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
PLAN_RANGES = ("plan-screening", "plan-selection", *SR.PLAN_CERTIFICATION_RANGES, *SR.PLAN_VERIFICATION_RANGES)


def other_seed(seed: int) -> int:
    """The seed of ``seed``'s independent reference batch (a distribution distance's comparison batch):
    ``seed + OTHER``, wrapped around inside the planner's registered range that holds ``seed`` so that it
    never reaches another purpose's seeds (certification seed 460 + 50 would be a verification seed; 560 +
    50 one of the interactions table's). Seeds outside those ranges (a hand-written ``certify(seeds=)``):
    ``seed + OTHER``."""
    for name in PLAN_RANGES:
        r = SR.REGISTRY.get(name)
        if r is not None and seed in r:
            return r.start + (seed - r.start + OTHER) % (r.stop - r.start)
    return seed + OTHER


def default_reference(den, model: str | None, quick: bool = False) -> Spec:
    """The model card's ``plan_reference`` spec if it has one, else Heun on a Karras schedule at
    ~80 NFE (~40 in quick mode): a high-accuracy deterministic solve of the model's own ODE."""
    card = (getattr(den, "meta", None) or {}).get("card", {})
    if "plan_reference" in card:
        return Spec.from_dict(card["plan_reference"])
    return Spec("heun", 20 if quick else 40, "karras")


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
        self.pending: dict = {}      # key -> future of the background reference worker (prefetch)
        self.prefetched = False
        self._pool = self._worker_den = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

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
        fut = self.pending.pop(key, None)
        if fut is not None and not fut.cancel():     # the worker is sampling it (``prefetch``): wait; a batch it has
            fut.result()                             # not started yet is taken back and sampled here instead
        if key not in self.cache and isinstance(spec, External):
            if spec.fn is None:
                raise ValueError(f"the external reference {spec.name!r} is not available here: pass reference=")
            t0 = time.perf_counter()
            x = spec.fn(n, seed)
            self._store(key, x, time.perf_counter() - t0, None, n)
        if key not in self.cache:
            self._store(key, *self._sample(self.den, spec, seed, n), n)
        return self.cache[key]

    def _sample(self, den, spec: Spec, seed: int, n: int):
        from ..latent.denoiser import images
        spec = self.prepare(spec)
        labels = self.labels(n)
        z = spec.noise(den, n, seed, self.shape)
        t0 = time.perf_counter()
        res = spec.sample(den, z, labels, seed, return_info=True)
        x = images(spec.denoiser(den), res.x)
        return x, time.perf_counter() - t0, res.nfe

    def _store(self, key, x, dt, nfe, n) -> None:
        with self._lock:
            self.cache[key] = (x, dt, nfe)
            self.sample_nfe += (nfe or 0) * n
            self._spent(key[0], dt)

    # -- a second core for the reference ---------------------------------------------------------
    def prefetch(self, spec: Spec, seeds, n: int) -> bool:
        """Sample ``spec`` (a plain sampler without techniques: the reference) at ``seeds`` in a background
        thread, on its own copy of the denoiser, when this process has a core its torch threads do not use
        (``spare_core``); ``images`` then waits for a batch the worker has not finished. The samples are the
        ones ``images`` would compute (same noise, same weights; a test checks they are identical), and no
        timed candidate shares the worker's core. Returns whether a worker started."""
        if isinstance(spec, External) or spec.techniques or not spare_core():
            return False
        if self._pool is None and not self._start_worker():
            return False
        for seed in seeds:
            key = (spec.label(), seed, n)
            if key not in self.cache and key not in self.pending:
                self.pending[key] = self._pool.submit(self._prefetched, self._worker_den, spec, seed, n, key)
        self.prefetched = True
        return True

    def _start_worker(self) -> bool:
        import concurrent.futures as cf
        import copy
        from ..metrics import param_bytes
        from ..sites import network
        mod = self.den if isinstance(self.den, torch.nn.Module) else network(self.den)
        if isinstance(mod, torch.nn.Module):
            if any(p.device.type != "cpu" for p in mod.parameters()):   # an accelerator: a second stream would share
                return False                                           # it with the candidates being timed
            if param_bytes(mod, buffers=False) > WORKER_MAX_BYTES:     # a large network is not copied
                return False
        try:
            den = copy.deepcopy(self.den)
        except Exception:       # noqa: BLE001 -- a denoiser that cannot be copied: no worker, same results
            return False
        try:                    # a batch being sampled stops at its next network call when the search stops the worker
            def halt(*_):
                if self._stop.is_set():
                    raise _Stopped()
            network(den).register_forward_pre_hook(halt)
        except Exception:       # noqa: BLE001 -- no network module found: the running batch finishes instead
            pass
        self._worker_den = den
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="effdiff-reference")
        return True

    def _prefetched(self, den, spec, seed, n, key):
        with torch.no_grad():          # grad mode is per thread
            self._store(key, *self._sample(den, spec, seed, n), n)

    def stop_prefetch(self) -> None:
        """Stop the worker (before anything is timed): batches not started are cancelled, the running one
        stops at its next network call; finished batches stay in the cache."""
        if self._pool is None:
            return
        self._stop.set()
        for fut in self.pending.values():
            fut.cancel()
        self._pool.shutdown(wait=True)
        for key, fut in list(self.pending.items()):
            if not fut.cancelled() and not isinstance(fut.exception(), _Stopped):
                fut.result()                    # a real error in the worker surfaces here
        self.pending.clear()
        self._pool = self._worker_den = None
        self._stop.clear()

    def _spent(self, label: str, dt: float) -> None:
        self.seconds[label] = self.seconds.get(label, 0.0) + dt


WORKER_MAX_BYTES = 2 << 30     # the reference worker copies the denoiser: not above 2 GiB of parameters


class _Stopped(Exception):
    """The reference worker's batch was stopped (``Sampler.stop_prefetch``)."""


def spare_core() -> bool:
    """Whether this process may run on more cores than its torch threads use (a second core for the
    reference worker: 1 torch thread on a 2-core machine, not ``taskset -c 0``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:                       # not Linux
        cores = os.cpu_count() or 1
    return cores > torch.get_num_threads()


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
        other = sm.images(reference, other_seed(s), n)[0] if measure.needs_other else None
        q.values.append(measure(Batch(x, ref, other, sm.labels(n), s)))
        q.seeds.append(s)
    return q
