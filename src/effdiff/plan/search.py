"""``ed.plan(denoiser, budget=...)``: find the cheapest composition inside a quality budget and
certify it on seeds the search never saw.

1. Screen (one screening seed, a small batch, the reference-free proxy: the pixel-space
   distribution change against an independent reference batch): every solver x schedule at a
   probe NFE, then down the NFE grid while it passes; techniques, their pairs and the students
   on top of the cheapest passing bases. Candidates far outside (proxy > ``SCREEN_LIMIT``) go.
2. Successive halving on selection seeds with the target measure (FD in the evaluation network
   where one exists): each rung adds seeds; a candidate whose 95% interval lies entirely above the
   budget is rejected with its numbers; of the rest the cheapest 1/ETA of those that may still be
   within the budget (``Quality.plausible``: the budget above the lower end of their one-sided 90%
   interval; then the others) stay, plus the cheapest that already holds and the one with the lowest
   upper CI end, as fallbacks. At 2-4 seeds a per-seed spread of 5-9% makes a mean over the budget
   weak evidence, so the rung does not demote on the mean alone.
3. The cheapest finalist that holds on all selection seeds is re-certified on fresh seeds (never
   used in the search); if it fails there, the next one on the same fresh seeds (the order is
   fixed before certification starts; every attempt is recorded).
4. Systems switches are tried on the winner (kept when measured faster and numerically the same).
5. Speed: the winner, the reference and the best single solver configuration timed side by side
   in interleaved rounds (``bench.timing``) on the certification batch.

Seeds: ``effdiff.seeds`` ranges ``plan-screening`` (200-299), ``plan-selection`` (300-399),
``plan-certification`` (400-499; ``plan-certification-2``, 3000-3199, where ``Settings.cert_range``
names it), ``plan-verification`` (500-599, ``plan verify``; ``plan-verification-2``, 3200-3399), calibration
batches from ``calibration`` (12345). A seed s's independent reference batch is s + 50, wrapped around
inside s's range (``runs.other_seed``).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch

from .. import seeds as SR
from .. import techniques as T
from ..metrics.stats import seeds_to_certify
from ..metrics.timing import ms_stats, rounds
from ..sites import network
from ..systems import native_low_precision
from . import space as S
from .quality import (PLAUSIBLE, Batch, DistributionChange, Quality, Relative, Unpaired, check_budget, for_model,
                      pooled_change)
from .runs import OTHER, SEEDS, External, Sampler, default_reference, measure_on, other_seed, score_of  # noqa: F401
from .spec import Spec

SCREEN_LIMIT = 0.5        # screening proxy limit: min(SCREEN_LIMIT, 2 x budget + SCREEN_SLACK) of the
SCREEN_SLACK = 0.15       # reference's own sampling spread (pixel distribution distance); lenient on purpose
ETA = 2                   # successive halving keeps the cheapest 1/ETA per rung
PROBE_NFE = 10
SYSTEMS_MAX_DEVIATION = 1e-3   # a systems switch must give the same samples: max |a - b| / max |a|
SYSTEMS_MIN_GAIN = 0.05        # ... and be measured more than 5% faster (interleaved rounds)
TWIN_DEVIATION = 1e-5          # two bases whose screening samples differ by no more (max |a - b| / max |a|) are one
                               # computation under two names (rounding apart): the later one is not screened further
SLOW_RUN_S = 10.0              # timing: a spec whose one run takes longer is timed in SLOW_ROUNDS rounds only
SLOW_ROUNDS = 3
MIN_SCREEN = 16                # the smallest screening batch a slow model's search shrinks to
ADVICE_POWER = 0.8             # evidence_advice: the fresh seeds that would certify with this predictive probability
FIT_SAMPLES = 128              # reference samples a schedule fitted during the search is fitted on (AYS and DP draw 32)


@dataclass
class Settings:
    """Sample counts and seeds per stage (``quick``: about a fifth of the work)."""
    n_screen: int = 64
    n: int = 200
    # samples per certification seed (None: n). More samples make each seed's value less noisy, but a relative
    # change is not the same quantity at another batch size: FD's and the proxy's sample-size bias, shared by
    # candidate and reference, shrinks with n, so a fixed difference grows relative to it (a certificate at a
    # larger n is stricter). Power comes from more fresh seeds by default
    n_fresh: int | None = None
    rungs: tuple = (2, 4)              # selection seeds per halving rung
    select_seeds: int = 6              # finalists: this many selection seeds
    fresh_seeds: int = 12              # certification (every attempt on the same fresh seeds; six were too few near the
                                       # noise floor: digits-dit's 10-step solvers, -2% [-11, +6] on 400-405, plan-suite-bf16)
    # a winner must also be likely to hold again when ``plan verify`` re-measures it on as many new
    # seeds: predictive probability >= replicate (quality.Quality.replication); below it, certification
    # adds fresh seeds once, up to max_fresh_seeds, and decides on all of them; None: off
    replicate: float | None = 0.9
    max_fresh_seeds: int = 18
    # certification seeds start this far into plan-certification (400 + cert_offset, ...): a new registered run
    # certifies on seeds no earlier run has seen (the defaults' 400-417 have been measured by many)
    cert_offset: int = 0
    # the registered seed range certification draws from (effdiff.seeds): "plan-certification" (400-499), or
    # "plan-certification-2" (3000-3199) / "-3" (3500-3699) for a registered run that needs more fresh seeds
    cert_range: str = "plan-certification"
    # size the certification from the selection seeds (None: off, fresh_seeds as given): before any fresh seed is
    # measured, each planned attempt's selection values give the count that would certify it with predictive
    # probability ADVICE_POWER (metrics.stats.seeds_to_certify, the replication rule included); the attempts share
    # their fresh seeds, so the certification takes the largest of these, at least fresh_seeds and at most size_fresh
    # (max_fresh_seeds: 1.5x it). What registered runs 4-6 did by hand
    size_fresh: int | None = None
    max_bases: int = 6                 # cheapest passing base configs that techniques are tried on
    max_select: int = 16               # screened candidates that enter selection (half cheapest, half best-screened)
    timing_repeats: int = 5
    attempts: int = 3                  # certification attempts (each recorded)
    # screening samples x seconds per sample-evaluation the screen may spend: a model whose evaluation costs
    # more than screen_budget / n_screen seconds per sample (measured on the reference) screens on fewer
    # samples (>= MIN_SCREEN), so a search stays near 15 minutes on a 2-core CPU; None: always n_screen
    screen_budget: float | None = 0.064
    # sample the reference's selection and certification batches in a background thread when the process has
    # a core its torch threads do not use (runs.spare_core); everything timed stays on the search's own threads
    reference_worker: bool = True
    # timing: a spec whose one run takes more than SLOW_RUN_S (the high-NFE reference) is timed in this many of
    # the interleaved rounds only (its run-to-run spread is a few percent of a long run)
    slow_rounds: int = SLOW_ROUNDS

    @classmethod
    def quick(cls) -> "Settings":
        return cls(n_screen=48, n=112, n_fresh=None, rungs=(2,), select_seeds=4, fresh_seeds=5, max_bases=3, max_select=8,
                   timing_repeats=3, attempts=2, max_fresh_seeds=10, screen_budget=0.045, slow_rounds=1)

    def override(self, **changes) -> "Settings":
        """These settings with ``changes`` (field name -> value; None values ignored), checked: an unknown
        field, a count below 1 or a certification range past 499 is a clear error. More ``fresh_seeds``
        without ``max_fresh_seeds`` raise the replication extension with them (to 1.5x, as 12 -> 18)."""
        names = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(changes) - names)
        if bad:
            raise ValueError(f"unknown plan setting(s) {bad}; known: {sorted(names)}")
        changes = {k: v for k, v in changes.items() if v is not None}
        fresh = changes.get("fresh_seeds")
        if isinstance(fresh, int) and not isinstance(fresh, bool) and "max_fresh_seeds" not in changes:
            changes["max_fresh_seeds"] = max(self.max_fresh_seeds, math.ceil(1.5 * fresh))
        out = dataclasses.replace(self, **changes)
        for k in ("fresh_seeds", "max_fresh_seeds", "select_seeds", "n", "n_screen", "attempts"):
            v = getattr(out, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"plan setting {k} must be an integer >= 1, got {v!r}")
        if isinstance(out.cert_offset, bool) or not isinstance(out.cert_offset, int) or out.cert_offset < 0:
            raise ValueError(f"plan setting cert_offset must be an integer >= 0, got {out.cert_offset!r}")
        if out.size_fresh is not None and (isinstance(out.size_fresh, bool) or not isinstance(out.size_fresh, int)
                                           or out.size_fresh < out.fresh_seeds):
            raise ValueError(f"plan setting size_fresh must be an integer >= fresh_seeds ({out.fresh_seeds}) or None, "
                             f"got {out.size_fresh!r}")
        start, stop = cert_bounds(out.cert_range)
        top = out.cert_offset + max(out.fresh_seeds, out.max_fresh_seeds, math.ceil(1.5 * (out.size_fresh or 0)))
        if start + top > stop:
            raise ValueError(f"certification seeds {start + out.cert_offset}-{start + top - 1} run past the "
                             f"{out.cert_range} range ({start}-{stop - 1})")
        return out


CERT_RANGES = SR.PLAN_CERTIFICATION_RANGES


def cert_bounds(name: str) -> tuple[int, int]:
    """[start, stop) of the certification seed range ``name`` (one of ``CERT_RANGES``)."""
    if name not in CERT_RANGES:
        raise ValueError(f"plan setting cert_range must be one of {list(CERT_RANGES)}, got {name!r}")
    r = SR.get(name)
    return r.start, r.stop


@dataclass
class Record:
    """What the search knows of one candidate."""
    label: str
    spec: Spec
    nfe: int
    families: tuple
    stage: str = "screen"
    screen: float | None = None
    screen_target: float | None = None     # the target measure on the screening batch (one seed)
    quality: Quality | None = None
    ms: list = field(default_factory=list)
    rejected: str | None = None
    certified: Quality | None = None
    costs: dict = field(default_factory=dict)
    twin: str | None = None                # a base that computes exactly what this earlier-screened one did

    @property
    def ms_per_sample(self) -> float:
        """The fastest of its timed runs (the least disturbed by other load on the machine)."""
        return min(self.ms) if self.ms else float("inf")

    def as_dict(self) -> dict:
        return {"label": self.label, "spec": _spec_dict(self.spec), "nfe": self.nfe, "families": list(self.families),
                "stage": self.stage, "screen_proxy": _finite(self.screen), "screen_target": _finite(self.screen_target), "ms_per_sample": _finite(self.ms_per_sample), "quality": self.quality.as_dict() if self.quality else None,
                "certified": self.certified.as_dict() if self.certified else None, "rejected": self.rejected,
                "costs": dict(self.costs)}


def _finite(v):
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def _spec_dict(spec: Spec) -> dict:
    try:
        return spec.to_dict()
    except TypeError:
        return spec.replace(techniques=[(n, {k: v for k, v in c.items() if k not in T.get(n).needs})
                                        for n, c in spec.techniques]).to_dict()


class Search:
    """One plan search (see the module docstring); ``run()`` returns the ``Plan``."""

    def __init__(self, den, budget, *, reference=None, metric=None, objective="time", cond=None, space=None,
                 quick=False, settings=None, model=None, progress=True, log=None, shape=None, screen_features=None):
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
        if not callable(den):
            raise TypeError(f"the denoiser must be callable D(x, sigma, cond), got {type(den).__name__}")
        self.den, self.budget, self.objective = den, check_budget(budget), objective
        self.model = model or (getattr(den, "meta", None) or {}).get("name") or _zoo_name(den)
        self.measure = for_model(den, metric)
        self.proxy = DistributionChange(screen_features)
        self.space = space or S.Space(quick=quick)
        self.set = settings or (Settings.quick() if quick else Settings())
        self.reference = reference if isinstance(reference, (Spec, External)) else (
            Spec.from_dict(reference) if isinstance(reference, dict) else default_reference(den, self.model, quick))
        self.sampler = Sampler(den, cond, shape)
        self.records: dict[str, Record] = {}
        self._bases: dict = {}                  # NFE -> the base records screened so far (twins: ``screen``)
        self.progress, self.log_fn = progress, log
        self.bar = None
        self.best: Record | None = None
        self.screen_best: Record | None = None
        self.screen_eval_ms: float | None = None   # the reference's ms per sample-evaluation (fit_screening)
        self.fresh_used = 0                        # plan-certification seeds used (certify: every attempt the same)
        self.advice: list[dict] = []               # certifications that failed for want of evidence (evidence_advice)
        self._pool: list | None = None             # the reference's scores on its pool (unpaired comparisons)
        self.stages: dict = {}                     # wall seconds per stage (cost_breakdown)
        self._stage_at: tuple | None = None
        self.fitted_info: dict = {}                # schedules fitted during the search (fit_schedules)
        self._fit_data = None

    # -- bookkeeping ------------------------------------------------------------------------
    def log(self, msg: str):
        if self.log_fn is not None:
            self.log_fn(msg)

    def _tick(self, rec: Record):
        if self.bar is None:
            return
        self.bar.update(1)
        if self.best is not None:
            self.bar.set_postfix_str(f"best (holds on selection seeds) {self.best.label} {self._cost_text(self.best)}")
        elif rec.screen is not None and not rec.rejected and (self.screen_best is None or
                                                                rec.ms_per_sample < self.screen_best.ms_per_sample):
            self.screen_best = rec
            self.bar.set_postfix_str(f"cheapest screened {rec.label} {rec.ms_per_sample:.2f} ms/sample")

    def record(self, cand: S.Candidate) -> Record:
        if cand.label not in self.records:
            self.records[cand.label] = Record(cand.label, cand.spec, cand.nfe, cand.families)
        return self.records[cand.label]

    def batch(self, rec_spec: Spec, seed: int, n: int, measure) -> tuple[float, float]:
        """(measure value, seconds) of one seed."""
        x, dt, _ = self.sampler.images(rec_spec, seed, n)
        ref = self.sampler.images(self.reference, seed, n)[0]
        other = self.sampler.images(self.reference, other_seed(seed), n)[0] if measure.needs_other else None
        return measure(Batch(x, ref, other, self.sampler.labels(n), seed)), dt

    # -- the target measure on selection and certification seeds ------------------------------
    @property
    def unpaired(self) -> bool:
        """A reference that draws its own noise (``External``) scored by a ``Relative`` measure: each
        seed's candidate batch is compared with a pool of the reference's batches, not with the one
        batch that happens to share its seed number (``quality.Unpaired``)."""
        return isinstance(self.reference, External) and isinstance(self.measure, Relative)

    def reference_seeds(self) -> list[int]:
        """The seeds every search measures the reference on at the selection batch size: all selection
        seeds and the certification seeds (every attempt's)."""
        return ([SEEDS["selection"] + i for i in range(self.set.select_seeds)]
                + [self.cert_seed(i) for i in range(self.set.fresh_seeds)])

    def cert_seed(self, i: int) -> int:
        """The ``i``-th certification seed (``Settings.cert_offset`` into ``Settings.cert_range``)."""
        return cert_bounds(self.set.cert_range)[0] + self.set.cert_offset + i

    def pool(self) -> list[float]:
        """The reference's scores on its batches at the selection and first certification seeds (the
        batches a paired search computes too), computed once; candidates' batches are independent of them."""
        if self._pool is None:
            n = self.set.n
            seeds = self.reference_seeds()
            self.log(f"unpaired comparison: scoring the reference on a pool of {len(seeds)} batches of {n}")
            self._pool = [score_of(self.sampler, self.reference, self.measure, s, n) for s in seeds]
        return self._pool

    def new_quality(self) -> Quality:
        if self.unpaired:
            return Unpaired(self.measure.name, relative=True, ref_scores=self.pool())
        return Quality(self.measure.name, relative=self.measure.relative)

    @property
    def n_fresh(self) -> int:
        """Samples per certification seed: ``Settings.n_fresh`` (the selection batch when None, and
        always when unpaired: the pooled reference is scored at the selection batch)."""
        return self.set.n if self.unpaired or not self.set.n_fresh else self.set.n_fresh

    def target(self, spec: Spec, seed: int, n: int | None = None) -> tuple[float, float]:
        """(the target measure at ``seed`` on ``n`` samples (default: the selection batch), seconds): paired
        with the reference's batch of the same seed, or, unpaired, the candidate's score relative to the pool's mean."""
        if not self.unpaired:
            return self.batch(spec, seed, n or self.set.n, self.measure)
        pool = self.pool()
        dt = self.sampler.images(spec, seed, self.set.n)[1]
        return pooled_change(score_of(self.sampler, spec, self.measure, seed, self.set.n), pool), dt

    # -- stage 1: screening -----------------------------------------------------------------
    @property
    def screen_limit(self) -> float:
        return min(SCREEN_LIMIT, 2 * self.budget + SCREEN_SLACK)

    def screen(self, cand: S.Candidate) -> Record:
        rec = self.record(cand)
        if rec.screen is None and rec.rejected is None:
            seed = SEEDS["screening"]
            try:
                v, dt = self.batch(cand.spec, seed, self.set.n_screen, self.proxy)
            except (FloatingPointError, RuntimeError, ValueError, TypeError) as e:
                rec.rejected = f"{rec.label}: failed on the screening batch ({type(e).__name__}: {e})"
                self._tick(rec)
                return rec
            rec.screen = v
            rec.ms.append(1000 * dt / self.set.n_screen)
            parent = self.records.get(cand.parent) if cand.parent else None
            if parent is not None and self._same_samples(cand.spec, parent, v, seed):
                rec.rejected = f"{rec.label}: the same samples as {parent.label} (the technique never acts here)"
                self._tick(rec)
                return rec
            if cand.families == ("solver",):      # one computation under two names (e.g. unipc-2 and dpmpp-2m-unic:
                first = next((r for r in self._bases.get(cand.nfe, [])         # the same steps, rounded apart)
                              if self._same_samples(cand.spec, r, v, seed, TWIN_DEVIATION)), None)
                self._bases.setdefault(cand.nfe, []).append(rec)
                if first is not None:
                    rec.twin = first.label
                    rec.rejected = (f"{rec.label}: the same samples as {first.label} (one computation under "
                                    "another name: screened once)")
                    self._tick(rec)
                    return rec
            limit = self.screen_limit
            if self.measure is not self.proxy and self.measure.relative:     # the target too, on the same batch
                rec.screen_target, _ = self.batch(cand.spec, seed, self.set.n_screen, self.measure)
            self.log(f"  screen {rec.label}: proxy {100 * v:+.0f}%" + (
                f", target {100 * rec.screen_target:+.0f}%" if rec.screen_target is not None else "")
                + f", {rec.ms[-1]:.2f} ms/sample")
            if not math.isfinite(v) or v > limit:
                rec.rejected = (f"{rec.label}: screening proxy {100 * v:+.0f}% (pixel distribution distance vs the "
                                f"reference's own spread) > +{100 * limit:.0f}%")
            elif rec.screen_target is not None and not rec.screen_target <= limit:
                rec.rejected = f"{rec.label}: {100 * rec.screen_target:+.0f}% {self._unit()} on the screening batch > +{100 * limit:.0f}%"
            elif self.space.max_memory is not None and OBJECTIVES["memory"](self, rec) > self.space.max_memory:
                rec.rejected = (f"{rec.label}: peak memory {rec.costs['memory'] / 1e6:.1f} MB (2 samples) > "
                                f"max_memory {self.space.max_memory / 1e6:.1f} MB")
            self._tick(rec)
        return rec

    def _same_samples(self, spec: Spec, other: Record, v: float, seed: int, tol: float = 0.0) -> bool:
        """Whether ``spec``'s screening samples are ``other``'s (max |a - b| / max |a| <= ``tol``)."""
        if other.screen is None or abs(other.screen - v) > tol * max(1.0, abs(v)) * 10:
            return False
        n = self.set.n_screen
        a, b = self.sampler.images(spec, seed, n)[0], self.sampler.images(other.spec, seed, n)[0]
        return bool((a - b).abs().max() <= tol * a.abs().max())

    def fit_schedules(self) -> None:
        """Fit ``space.fit``'s schedules (AYS: KLUB coordinate descent; DP: Watson-style dynamic program) for
        this model where the zoo ships none of that method for it, on the reference sampler's own samples
        (``FIT_SAMPLES`` at the calibration seed, in the denoiser's space: no data needed, any model), at
        ``space.FIT_STEPS`` steps; each enters the space as ``METHOD-fit:MODEL`` (``Space.fitted``) and is
        recorded in the plan (``search.fitted_schedules``: σ's, samples, seconds)."""
        from .. import schedule_opt
        shipped = S.fitted_schedules(self.model)
        for method in self.space.fit:
            name = f"{method}-fit:{self.model or 'model'}"
            if f"{method}:{self.model}" in shipped or name in self.space.fitted:
                self.log(f"fit: {method} for {self.model} {'ships' if name not in self.space.fitted else 'is fitted'}: "
                         "not fitted again")
                continue
            t0 = time.perf_counter()
            data, labels = self.fit_data()
            fitter = schedule_opt.ays if method == "ays" else schedule_opt.dp
            sig = fitter(self.den, data, S.FIT_STEPS, cond=labels, seed=0)
            self.space.fitted[name] = [float(v) for v in sig]
            dt = time.perf_counter() - t0
            self.fitted_info[name] = {"method": method, "steps": S.FIT_STEPS, "samples": len(data),
                                      "data": f"the reference sampler's samples ({self.reference.label()}, seed "
                                              f"{SEEDS['calibration']})", "seconds": round(dt, 1),
                                      "sigmas": self.space.fitted[name]}
            self.log(f"fit: {name} in {dt:.1f} s on {len(data)} reference samples")

    def fit_data(self):
        """(``FIT_SAMPLES`` samples in the denoiser's space, their labels) of the reference sampler at the
        calibration seed: what a fitted schedule is fitted on (sampled once per search)."""
        if self._fit_data is None:
            n, seed = FIT_SAMPLES, SEEDS["calibration"]
            labels = self.sampler.labels(n)
            if isinstance(self.reference, External):       # an author's sampler: pixel samples (a pixel model)
                self._fit_data = self.sampler.images(self.reference, seed, n)[0], labels
            else:
                ref = self.sampler.prepare(self.reference)
                with torch.no_grad():
                    self._fit_data = ref.sample(self.den, ref.noise(self.den, n, seed, self.sampler.shape), labels,
                                                seed), labels
        return self._fit_data

    def fit_screening(self) -> None:
        """Shrink the screening batch of a model whose evaluations are slow on this machine: time the
        reference on the screening batch (which screening needs anyway), and screen on ``screen_budget /
        seconds per sample-evaluation`` samples (between ``MIN_SCREEN`` and ``n_screen``). Selection and
        certification keep their sizes."""
        if self.set.screen_budget is None or self.set.n_screen <= MIN_SCREEN:
            return
        m = self.set.n_screen
        _, dt, nfe = self.sampler.images(self.reference, SEEDS["screening"], m)
        if not nfe:                              # an external reference: no evaluation count to scale by
            return
        per_eval = dt / (m * nfe)
        n = int(min(self.set.n_screen, max(MIN_SCREEN, self.set.screen_budget / per_eval)))
        self.screen_eval_ms = 1000 * per_eval
        if n < self.set.n_screen:
            self.log(f"screen: {1000 * per_eval:.2f} ms per sample-evaluation on this machine: screening on {n} "
                     f"samples instead of {self.set.n_screen}")
            self.set = dataclasses.replace(self.set, n_screen=n)

    def screen_bases(self) -> list[Record]:
        """Every solver x schedule at the probe NFE (and the top NFE if it fails there), then down
        the NFE grid while it passes. Returns the passing records."""
        bases = S.base_specs(self.space, self.den, self.model)
        by_pair: dict = {}
        for c in bases:
            by_pair.setdefault((c.spec.solver, c.spec.schedule_name, c.spec.guidance), []).append(c)
        passing = []
        for pair, cands in by_pair.items():
            cands.sort(key=lambda c: c.nfe)
            probe = min(cands, key=lambda c: abs(c.nfe - PROBE_NFE))
            rec = self.screen(probe)
            start = probe
            if rec.twin is not None:
                continue                      # another name of a pair already screened
            if rec.rejected:
                top = cands[-1]
                if top is probe or self.screen(top).rejected:
                    continue
                start = top
            lower = [c for c in cands if c.nfe < start.nfe]
            ok = [start]
            for c in reversed(lower):
                if self.screen(c).rejected:
                    break
                ok.append(c)
            passing += [self.records[c.label] for c in ok]
        return passing

    def screen_compositions(self, bases: list[Record]) -> list[Record]:
        """Techniques (singles, then pairs that passed alone) on the cheapest bases; students, and
        students with each technique."""
        singles = self.space.techniques_for(self.den, self.objective)
        chosen = sorted(bases, key=lambda r: (r.nfe, r.ms_per_sample))[: self.set.max_bases]
        # also the base one notch above each chosen one (a technique may pay off more on more steps)
        more = []
        for r in chosen:
            above = [b for b in bases if b.spec.solver == r.spec.solver and b.spec.schedule_name == r.spec.schedule_name
                     and b.nfe > r.nfe]
            if above:
                more.append(min(above, key=lambda b: b.nfe))
        chosen = list({r.label: r for r in chosen + more}.values())
        out = []
        for r in chosen:
            base = S.Candidate(r.spec, r.nfe, r.families)
            ok = []
            for entry in singles:
                c = S.compose(base, [entry], (S.family_of(entry[0]),))
                if isinstance(c, str):
                    self.space.pruned.append((f"{r.label} + {entry[0]}", c))
                    continue
                rec = self.screen(c)
                if not rec.rejected:
                    ok.append(entry)
                    out.append(rec)
            for i, a in enumerate(ok):          # pairs of different families, both passing alone
                for b in ok[i + 1:]:
                    if S.family_of(a[0]) == S.family_of(b[0]):
                        continue
                    c = S.compose(base, [a, b], (S.family_of(a[0]), S.family_of(b[0])))
                    if not isinstance(c, str):
                        rec = self.screen(c)
                        if not rec.rejected:
                            out.append(rec)
        if self.space.students:
            for name, steps, solver in S.students_of(self.model):
                st = S.Candidate(Spec(solver, steps, "student", model=name), steps, ("student",))
                rec = self.screen(st)
                if rec.rejected:
                    continue
                out.append(rec)
                student = st.spec.denoiser(self.den)
                for entry in singles:
                    if T.get(entry[0]).why_not(student) is not None:
                        continue
                    c = S.compose(st, [entry], (S.family_of(entry[0]),))
                    if not isinstance(c, str):
                        r2 = self.screen(c)
                        if not r2.rejected:
                            out.append(r2)
        return out

    def preselect(self, recs: list[Record]) -> list[Record]:
        """The candidates that enter selection: the cheapest half of ``max_select`` among those whose
        screening result is within the budget, the cheapest of each family combination first (at a loose
        budget many cheap candidates of one kind, e.g. students with caching, pass screening and must not
        crowd out a plain solver configuration), and the best-screened (a safer fallback)."""
        k = self.set.max_select
        if len(recs) <= k:
            return recs

        def score(r):       # the target measure on the screening batch where there is one, else the proxy
            return r.screen_target if r.screen_target is not None else r.screen
        plausible = [r for r in recs if score(r) <= self.budget] or recs
        cheap = sorted(plausible, key=lambda r: (self.cost(r), score(r)))
        firsts, kinds = [], set()                # the cheapest of each family combination, in cost order
        for r in cheap:
            if tuple(r.families) not in kinds:
                kinds.add(tuple(r.families))
                firsts.append(r)
        chosen: dict = {}
        for r in firsts + cheap:
            if len(chosen) >= k // 2:
                break
            chosen.setdefault(r.label, r)
        for r in sorted(recs, key=score):
            if len(chosen) >= k:
                break
            chosen.setdefault(r.label, r)
        for r in recs:
            if r.label not in chosen:
                r.rejected = (f"{r.label}: screening {100 * score(r):+.0f}% at {self._cost_text(r)}: neither among "
                              f"the {k // 2} cheapest within the budget (one per family combination first) nor the best-screened")
        return list(chosen.values())

    # -- stage 2: successive halving on selection seeds ---------------------------------------
    def evaluate(self, rec: Record, k: int) -> Quality:
        seeds = [SEEDS["selection"] + i for i in range(k)]
        q = rec.quality or self.new_quality()
        for s in seeds[len(q.values):]:
            v, dt = self.target(rec.spec, s)
            q.values.append(v)
            q.seeds.append(s)
            rec.ms.append(1000 * dt / self.set.n)
        rec.quality = q
        self._tick(rec)
        return q

    def cost(self, rec: Record) -> float:
        return OBJECTIVES[self.objective](self, rec)

    def halving(self, alive: list[Record]) -> list[Record]:
        for k in (*self.set.rungs, self.set.select_seeds):
            for rec in alive:
                rec.stage = f"selection ({k} seeds)"
                q = self.evaluate(rec, k)
                if q.lower > self.budget:
                    rec.rejected = f"{rec.label}: {q.text()} {self._unit()} (over the +{100 * self.budget:g}% budget)"
            alive = [r for r in alive if not r.rejected]
            holding = [r for r in alive if r.quality.holds(self.budget)]
            if holding:
                self.best = min(holding, key=self.cost)
            if k == self.set.select_seeds:
                break
            alive.sort(key=lambda r: (not r.quality.plausible(self.budget), self.cost(r)))   # plausible first, then cheap
            keep = alive[: max(1, math.ceil(len(alive) / ETA))]
            safest = min(alive, key=lambda r: r.quality.upper) if alive else None
            for extra in (self.best, safest):      # the cheapest that holds and the safest stay as fallbacks
                if extra is not None and extra not in keep:
                    keep.append(extra)
            for r in alive:
                if r in keep:
                    continue
                if r.quality.plausible(self.budget):
                    r.rejected = (f"{r.label}: {r.quality.text()} {self._unit()}; slower than the {len(keep)} kept "
                                  f"at {k} seeds ({self._cost_text(r)})")
                else:
                    r.rejected = (f"{r.label}: {r.quality.text()} {self._unit()}; likely over the "
                                  f"+{100 * self.budget:g}% budget at {k} seeds (P(within) < {PLAUSIBLE:g}), "
                                  f"{len(keep)} kept ({self._cost_text(r)})")
            alive = keep
        return alive

    def certification_order(self, finalists: list[Record]) -> list[Record]:
        """The certification attempts (at most ``attempts``), fixed before any of them runs: the finalists
        that held on the selection seeds, cheapest first; then, while attempts remain, those whose selection
        mean is within the budget but whose interval was too wide to hold there, lowest upper end first. Six
        selection seeds of a candidate near the budget often give an interval wider than the budget; the
        fresh seeds decide for these as for any attempt (and the chance that a failing candidate passes is
        at most ``attempts`` times one test's, whichever candidates the attempts are)."""
        held = sorted([r for r in finalists if r.quality.holds(self.budget)], key=self.cost)
        wide = sorted([r for r in finalists if r not in held and r.quality.mean <= self.budget],
                      key=lambda r: r.quality.upper)
        return (held + wide)[: self.set.attempts]

    def sized(self, order: list[Record]) -> Settings:
        """The settings with ``fresh_seeds`` sized for the certification attempts ``order`` (``size_fresh``), from
        their selection values only: the largest ``seeds_needed`` among them (the count that certifies with
        predictive probability ``ADVICE_POWER``; the attempts share their fresh seeds), clamped to [fresh_seeds,
        size_fresh]; max_fresh_seeds at least 1.5x it. Unchanged where the selection values say nothing (each
        mean over the budget, an unpaired comparison)."""
        cap = self.set.size_fresh
        needs = [n[1] for n in (self.seeds_needed(r.quality) for r in order if r.quality is not None) if n]
        if cap is None or not needs:
            return self.set
        k = min(max(max(needs), self.set.fresh_seeds), cap)
        return dataclasses.replace(self.set, fresh_seeds=k, max_fresh_seeds=max(self.set.max_fresh_seeds,
                                                                                math.ceil(1.5 * k)))

    def _unit(self) -> str:
        return "FD" if "FD" in self.measure.name else "change"

    def _cost_text(self, r: Record) -> str:
        c = self.cost(r)
        return f"{c:.3g} {OBJECTIVE_UNITS[self.objective]}"

    # -- stage 3: certification on fresh seeds -------------------------------------------------
    def certify(self, rec: Record) -> Quality:
        """The candidate on ``fresh_seeds`` seeds of ``plan-certification``, never used to pick. Every attempt
        is scored on the same fresh seeds (the reference's batches are sampled once): the order of the
        attempts is fixed before certification starts (cost among the finalists that held on selection
        seeds), so no candidate is picked on the seeds that certify it. A later attempt runs only after the
        earlier ones failed on these seeds, which makes its test, if anything, stricter, never laxer; the
        chance that some failing candidate is certified is at most ``attempts`` times each test's, as with
        seeds of its own. A candidate that holds but is unlikely to hold again on as many new seeds
        (replication probability < ``replicate``) gets more fresh seeds, once, and is decided on all of them."""
        q = self.new_quality()
        rec.certified = q
        self._fresh_seeds(q, self.set.fresh_seeds, rec)
        rep = self.set.replicate
        more = self.set.max_fresh_seeds
        if rep is not None and more > len(q.values) and q.holds(self.budget) and q.replication(self.budget) < rep:
            self.log(f"{rec.label}: holds on {len(q.values)} fresh seeds ({q.text()}) but would hold again "
                     f"{self._replication_shortfall(q)}: {more} fresh seeds")
            self._fresh_seeds(q, more, rec)
        return q

    def _fresh_seeds(self, q: Quality, k: int, rec: Record) -> None:
        while len(q.values) < k:
            s = self.cert_seed(len(q.values))
            if s >= cert_bounds(self.set.cert_range)[1]:
                raise RuntimeError(f"the {self.set.cert_range} seed range is used up")
            self.fresh_used = max(self.fresh_used, len(q.values) + 1)
            v, _ = self.target(rec.spec, s, self.n_fresh)
            q.values.append(v)
            q.seeds.append(s)
        self._tick(rec)

    def certified(self, q: Quality) -> bool:
        """Holds on fresh seeds and, when ``replicate`` is set, likely to hold again."""
        rep = self.set.replicate
        return q.holds(self.budget) and (rep is None or q.replication(self.budget) >= rep)

    def not_certified(self, rec: Record, q: Quality) -> str:
        if not q.holds(self.budget):
            return f"{rec.label}: held on selection seeds ({rec.quality.text()}) but not on fresh seeds ({q.text()})"
        return (f"{rec.label}: holds on {len(q.values)} fresh seeds ({q.text()}) but is too noisy to hold again: "
                f"a re-measurement on as many new seeds would hold {self._replication_shortfall(q)}")

    def seeds_needed(self, q: Quality) -> tuple[float, int] | None:
        """(probability, fresh seeds): how many fresh seeds would certify a candidate measured as ``q``, with
        predictive probability ``ADVICE_POWER``, or 0.5 where its few seeds leave the mean too uncertain for that
        at any count (``metrics.stats.seeds_to_certify``: from its mean and spread, the replication rule
        included). None where more seeds would not help (a mean over the budget) or for an unpaired comparison,
        whose pooled reference the estimate leaves out."""
        if isinstance(q, Unpaired) or len(q.values) < 2 or q.mean >= self.budget:
            return None
        for power in (ADVICE_POWER, 0.5):
            k = seeds_to_certify(q.values, self.budget, power, self.set.replicate)
            if k is not None:
                return power, k
        return None

    def evidence_advice(self, rec: Record, q: Quality, what: str = "",
                        need: tuple[float, int] | None = None) -> dict | None:
        """A certification that failed although its mean is within the budget failed for want of evidence:
        ``need`` (default ``seeds_needed(q)``) and the settings of a re-run on seeds this search did not use.
        Recorded in the plan (``search["advice"]``) and its summary; None where more seeds would not help."""
        need = need or self.seeds_needed(q)
        if need is None:
            return None
        power, k = need
        start, stop = cert_bounds(self.set.cert_range)
        rng, offset = self.set.cert_range, self.set.cert_offset + self.fresh_used
        if start + offset + math.ceil(1.5 * k) > stop:       # not room for it (and its extension) in this range
            rng, offset = next(r for r in CERT_RANGES if r != self.set.cert_range), 0
        flags = f"--fresh-seeds {k} --cert-offset {offset}" + (f" --cert-range {rng}" if rng != "plan-certification" else "")
        a = {"label": rec.label, "what": what or "certification", "fresh_seeds_used": len(q.values),
             "quality": q.text(), "fresh_seeds": k, "power": power, "cert_range": rng, "cert_offset": offset,
             "text": (f"{rec.label}{what}: {q.text()} on {len(q.values)} fresh seeds, within the budget in the mean: "
                      f"about {k} fresh seeds would certify it with probability {power:g} (`effdiff plan ... "
                      f"{flags}`: seeds this search did not use)")}
        self.advice.append(a)
        self.log(f"advice: {a['text']}")
        return a

    def _replication_shortfall(self, q: Quality) -> str:
        """'with probability P < replicate': how likely a re-measurement on as many new seeds holds again."""
        return f"with probability {q.replication(self.budget):.2f} < {self.set.replicate:g}"

    def _stage(self, name: str) -> None:
        """Close the running stage's wall clock and open ``name``'s (``search["stages"]`` in the plan)."""
        now = time.perf_counter()
        if self._stage_at is not None:
            prev, t = self._stage_at
            self.stages[prev] = self.stages.get(prev, 0.0) + now - t
        self._stage_at = (name, now) if name else None

    def cost_breakdown(self) -> dict:
        """Where the search's wall clock went: seconds per stage, and of all sampling, the reference's
        share (its batches on every seed the search measured) and the candidates'."""
        ref = self.sampler.seconds.get(self.reference.label(), 0.0)
        return {"stages_s": {k: round(v, 1) for k, v in self.stages.items()},
                "sampling_s": {"reference": round(ref, 3),
                               "candidates": round(sum(self.sampler.seconds.values()) - ref, 3)}}

    def run(self):
        from tqdm.auto import tqdm
        from .file import Plan
        t0 = time.perf_counter()
        self.bar = tqdm(desc="plan", unit="run", disable=not self.progress, leave=False)
        try:
            if self.space.fit:
                self._stage("fitting")
                self.fit_schedules()
            self._stage("screening")
            self.fit_screening()
            if self.set.reference_worker and not self.unpaired:   # the reference's selection and certification
                seeds = self.reference_seeds()                                     # batches, on a spare core
                sel, cert = seeds[: self.set.select_seeds], seeds[self.set.select_seeds:]
                if self.sampler.prefetch(self.reference, sel, self.set.n):
                    self.sampler.prefetch(self.reference, cert, self.n_fresh)
                    self.log(f"reference: {len(sel)} batches of {self.set.n} and {len(cert)} of {self.n_fresh} sampled "
                             "on a spare core while the search runs")
            bases = self.screen_bases()
            self.log(f"screen: {len(bases)} base configurations pass of {len(self.records)} tried")
            comps = self.screen_compositions(bases)
            alive = [r for r in bases + comps if not r.rejected]
            alive = self.preselect(list({r.label: r for r in alive}.values()))
            self.log(f"screen: {len(alive)} candidates go to selection")
            self._stage("selection")
            finalists = self.halving(alive)
            order = self.certification_order(finalists)
            winner, attempts = None, []
            self._stage("certification")
            fetched = self.set.fresh_seeds                  # the certification seeds the worker was given
            if self.set.size_fresh is not None:
                self.set = self.sized(order)
                self.log(f"certification: {self.set.fresh_seeds} fresh seeds, sized from the selection seeds of its "
                         f"{len(order)} planned attempt(s) (at least {fetched}, at most {self.set.size_fresh})")
            if self.sampler.prefetched:             # the seeds sizing added and those a replication extension takes
                top = self.set.max_fresh_seeds if self.set.replicate is not None else self.set.fresh_seeds
                self.sampler.prefetch(self.reference, [self.cert_seed(i) for i in range(fetched, top)], self.n_fresh)
            for rec in order:
                rec.stage = "certification"
                q = self.certify(rec)
                attempts.append(rec.label)
                if self.certified(q):
                    winner = rec
                    break
                rec.rejected = self.not_certified(rec, q)
            if winner is None:          # the one re-run most likely to certify: at the higher probability, fewest seeds
                needs = {r.label: self.seeds_needed(r.certified) for r in order if r.certified is not None}
                best = min((r for r in order if needs.get(r.label)), default=None,
                           key=lambda r: (-needs[r.label][0], needs[r.label][1]))
                if best is not None:
                    self.evidence_advice(best, best.certified, need=needs[best.label])
            for r in finalists:
                if r is not winner and not r.rejected:
                    r.rejected = f"{r.label}: another finalist was certified first" if winner else None
            systems = []
            self._stage("systems")
            self.sampler.stop_prefetch()          # nothing is timed while the worker runs
            if winner is not None:
                systems, spec, cert = self.systems_pass(winner)
                if spec is not winner.spec:        # the plan: the certified spec with the kept switches
                    winner = dataclasses.replace(winner, spec=spec, label=spec.label(),
                                                 certified=cert or winner.certified)
            self._stage("timing")
            timing = self.time_side_by_side(winner, systems)
            self._stage("")
        finally:
            self.sampler.stop_prefetch()
            self.bar.close()
        return Plan.from_search(self, winner, attempts, systems, timing, time.perf_counter() - t0)

    # -- stage 4: systems switches on the winner -------------------------------------------------
    def systems_pass(self, winner: Record) -> tuple[list[dict], Spec, Quality | None]:
        """Each applicable switch (``space.systems``, in order) on the winner, kept when it is measured
        > ``SYSTEMS_MIN_GAIN`` faster in interleaved rounds at this process's thread count and either
        gives the same samples (max relative deviation < ``SYSTEMS_MAX_DEVIATION``: ``compile`` on fp32,
        ``channels-last``) or, where it changes them (``autocast`` in the dtype this machine computes
        natively, ``compile`` on top of it), holds the budget when the winner with it is certified on the
        same fresh seeds as the winner. That is one more test on those seeds per such switch (the chance
        that a failing candidate passes grows by one test's, as for another certification attempt), and
        the plan's certificate is then the one of the spec it ships. A switch's one-off cost (``compile``:
        the first call's compilation) is recorded, not timed. Returns (one entry per switch tried, the
        winner's spec with the kept switches, the certification of that spec where a kept switch changed
        the samples, else None); the winner's record keeps its certified spec (the best single
        configuration may be that record)."""
        out, current, cert = [], winner.spec, None
        for name in self.space.systems:
            tech = T.get(name)
            cfg = {"num_threads": max(1, torch.get_num_threads())} if name == "threads" else {}
            if tech.why_not(current.denoiser(self.den)) is not None:
                continue
            if name == "autocast":
                dtype = native_low_precision(next(network(self.den).parameters()).device.type)
                if dtype is None:
                    out.append({"switch": name, "config": {}, "kept": False,
                                "skipped": "no native bf16 / fp16 on this CPU (autocast would emulate it: slower)"})
                    continue
                cfg = {"dtype": dtype}
            spec = current.use((name, cfg))
            n, seed = self.set.n, SEEDS["screening"]     # the selection batch size: one shape compiled per search
            a = self.sampler.images(current, seed, n)[0]
            try:
                b, first_s, _ = self.sampler.images(spec, seed, n)       # the first call: compilation included
            except Exception as e:      # noqa: BLE001 -- a backend that fails here (no compiler) is a switch not kept
                out.append({"switch": name, "config": cfg, "kept": False, "error": f"{type(e).__name__}: {e}"[:300]})
                continue
            dev = float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))
            t = self._interleaved([current, spec], n, seed, self.set.timing_repeats)
            faster = t[1]["ms_per_sample"] < (1 - SYSTEMS_MIN_GAIN) * t[0]["ms_per_sample"]
            d = {"switch": name, "config": cfg, "max_rel_deviation": dev,
                 "max_rel_deviation_allowed": SYSTEMS_MAX_DEVIATION, "ms_without": t[0]["ms_per_sample"],
                 "ms_with": t[1]["ms_per_sample"], "threads": torch.get_num_threads(), "first_call_s": first_s,
                 "one_off_s": max(0.0, first_s - n * t[1]["ms_per_sample"] / 1000)}
            keep = faster and dev < SYSTEMS_MAX_DEVIATION
            how = "same samples" if dev < SYSTEMS_MAX_DEVIATION else "changes samples"
            if faster and not keep:           # it changes the samples: certified like the winner, on its seeds
                rec = Record(spec.label(), spec, winner.nfe, winner.families + ("systems",))
                rec.stage = "certification (systems switch)"
                q = self.certify(rec)
                keep = self.certified(q)
                d["certified"] = {**q.as_dict(), "holds": keep}
                verdict = ("holds" if keep else "over the budget" if not q.holds(self.budget) else
                           f"holds but would hold again {self._replication_shortfall(q)}: not certified")
                how = f"changes samples, certified {q.text()}: {verdict}"
                if keep:
                    cert = q
                else:
                    a = self.evidence_advice(rec, q, f" (systems switch {name})")
                    if a is not None:
                        d["certified"]["seeds_to_certify"] = a["fresh_seeds"]
            d["kept"] = keep
            out.append(d)
            self.log(f"systems {name}: {t[0]['ms_per_sample']:.2f} -> {t[1]['ms_per_sample']:.2f} ms/sample, "
                     f"max relative deviation {dev:.1e} ({how}), first call {first_s:.1f} s: "
                     f"{'kept' if keep else 'not kept'}")
            if keep:
                current = spec
        return out, current, cert

    # -- stage 5: timing ------------------------------------------------------------------------
    def _interleaved(self, specs: list[Spec], n: int, seed: int, repeats: int) -> list[dict]:
        """ms per sample of each spec, timed in interleaved rounds after a warm-up (bench.timing).
        Each spec's techniques are attached around its own runs only (untimed): two specs never
        run with each other's hooks or switches on the shared network."""
        from ..latent.denoiser import images
        specs = [self.sampler.prepare(s) if isinstance(s, Spec) else s for s in specs]
        times = [[] for _ in specs]
        labels = self.sampler.labels(n)

        def go(s, r) -> float:
            z = self.sampler.unit_noise(s, n, r)
            with s.apply(self.den) as h:
                t0 = time.perf_counter()
                images(s.denoiser(self.den), s.run(self.den, h, z, labels, r))
                return time.perf_counter() - t0
        ran = {}              # label -> seconds of one run at this batch size, where this process has run it
        for (label, _, m), v in self.sampler.cache.items():
            if m == n:
                ran[label] = min(ran.get(label, math.inf), v[1])
        for s in specs:       # a warm-up for specs this process has not run at this batch size yet (a first call
            if isinstance(s, Spec) and s.label() not in ran:          # compiles); an external reference brings its own
                t0 = time.perf_counter()
                go(s, seed)
                ran[s.label()] = time.perf_counter() - t0
        plan_rounds = rounds([seed], repeats)
        timed_in = [_rounds_for(ran.get(s.label()), len(plan_rounds), self.set.slow_rounds) for s in specs]
        for j, r in enumerate(plan_rounds):
            for i, s in enumerate(specs):
                if j not in timed_in[i]:
                    continue
                if isinstance(s, Spec):
                    times[i].append(go(s, r))
                else:              # a reference that caches its samples is timed on its uncached function
                    fn = getattr(s.fn, "uncached", s.fn)
                    t0 = time.perf_counter()
                    fn(n, r)
                    times[i].append(time.perf_counter() - t0)
        return [ms_stats(t, n) for t in times]

    def timing_n(self, specs: dict) -> int:
        """The batch the side-by-side timing runs: the selection batch (the shape the systems pass
        compiled), the screening batch when an external reference is timed (it may cost seconds a sample)."""
        return self.set.n_screen if any(isinstance(s, External) for s in specs.values()) else self.set.n

    def best_single(self) -> Record | None:
        """The cheapest plain solver configuration that meets the budget: certified on the fresh seeds, or
        held on the selection seeds and never certified (one refused on fresh seeds does not meet it)."""
        ok = [r for r in self.records.values() if r.families == ("solver",) and (
              r.certified is not None and self.certified(r.certified)
              or r.quality is not None and r.quality.holds(self.budget) and r.certified is None)]
        return min(ok, key=lambda r: r.nfe) if ok else None

    def time_side_by_side(self, winner: Record | None, systems: list | None = None) -> dict:
        """The reference, the plan and the best single configuration in interleaved rounds, all at
        this process's thread count; where the plan kept systems switches, also the best single
        configuration with the same switches (what those switches alone would give it)."""
        specs = {"reference": self.reference}
        if winner is not None:
            specs["plan"] = winner.spec
        single = self.best_single()
        if single is not None:
            specs["best_single"] = single.spec
            kept = [(d["switch"], d["config"]) for d in systems or [] if d.get("kept")]
            if kept and winner is not None:
                specs["best_single_with_plan_switches"] = single.spec.use(*kept)
        t = self._interleaved(list(specs.values()), self.timing_n(specs), SEEDS["certification"], self.set.timing_repeats)
        out = {k: {**v, "label": s.label()} for (k, s), v in zip(specs.items(), t)}
        if "plan" in out:
            out["speedup_vs_reference"] = out["reference"]["ms_per_sample"] / out["plan"]["ms_per_sample"]
            if "best_single" in out:
                out["speedup_vs_best_single"] = out["best_single"]["ms_per_sample"] / out["plan"]["ms_per_sample"]
            if "best_single_with_plan_switches" in out:
                out["speedup_vs_best_single_with_plan_switches"] = (
                    out["best_single_with_plan_switches"]["ms_per_sample"] / out["plan"]["ms_per_sample"])
        out["threads"] = torch.get_num_threads()
        out["one_off_s"] = sum(d.get("one_off_s", 0.0) for d in systems or [] if d.get("kept"))
        out["note"] = ("wall clock on this machine, interleaved rounds, every row at the same thread count; "
                       "one_off_s: the plan's kept switches' one-off cost (compilation), not in ms_per_sample; "
                       "under shared load only indicative: re-run `effdiff bench --suite plan` on an idle core")
        return out


def _rounds_for(run_s: float | None, k: int, slow_rounds: int = SLOW_ROUNDS) -> set:
    """The interleaved rounds a spec is timed in: all ``k``, or, for a spec whose one run takes more
    than ``SLOW_RUN_S`` (a high-NFE reference: its run-to-run spread is a few percent of a long run),
    about half of them (at most ``slow_rounds``: 3 of 5, 2 of 3; quick: 1) spread evenly over the others
    (first, middle, last): the same period of machine load, a fraction of the cost."""
    m = max(1, min(slow_rounds, (k + 1) // 2))
    if run_s is None or run_s <= SLOW_RUN_S or m >= k:
        return set(range(k))
    return {round(i * (k - 1) / (m - 1)) for i in range(m)} if m > 1 else {0}


def _zoo_name(den) -> str | None:
    """The zoo name of a zoo model (its card's preset is the name for the base models)."""
    meta = getattr(den, "meta", None) or {}
    card = meta.get("card", {})
    from .. import zoo
    for key in ("name", "preset"):
        v = card.get(key)
        if v and v in zoo.names():
            return v
    return meta.get("zoo_name")


def _time(s: Search, r: Record) -> float:
    return r.ms_per_sample


def _nfe(s: Search, r: Record) -> float:
    return float(r.nfe)


def _measured(kind: str):
    """A cost measured once per candidate on two samples of the screening noise (``metrics``):
    MACs per sample of the whole run (caches and early exits lower it), weight bytes of the network
    that runs (quantized techniques: their packed bytes), or peak tensor memory of the run."""
    def cost(s: Search, r: Record) -> float:
        if kind not in r.costs:
            r.costs[kind] = _measure_cost(s, r.spec, kind)
        return r.costs[kind]
    return cost


def _measure_cost(s: Search, spec: Spec, kind: str) -> float:
    from ..metrics import macs_per_sample, param_bytes, peak_memory
    from ..sites import network
    spec = s.sampler.prepare(spec)
    z = s.sampler.unit_noise(spec, 2, SEEDS["screening"])
    labels = s.sampler.labels(2)
    with spec.apply(s.den) as h:
        if kind == "macs":
            return macs_per_sample(lambda x: spec.run(s.den, h, x, labels, 0), z)
        if kind == "memory":
            return float(peak_memory(lambda: spec.run(s.den, h, z, labels, 0)))
        stats = h.stats if isinstance(h.stats, dict) else {h.name: h.stats}
        packed = [getattr(v, "packed_bytes", 0) for v in stats.values() if v is not None]
        if any(packed):
            den = spec.denoiser(s.den)
            return float(param_bytes(network(den)) - sum(getattr(v, "fp32_bytes", 0) for v in stats.values()
                                                          if v is not None) + sum(packed))
        return float(param_bytes(network(spec.denoiser(s.den))))


OBJECTIVES = {"time": _time, "nfe": _nfe, "macs": _measured("macs"), "bytes": _measured("bytes"),
              "memory": _measured("memory")}
OBJECTIVE_UNITS = {"time": "ms/sample", "nfe": "NFE", "macs": "MACs/sample", "bytes": "weight bytes",
                   "memory": "peak bytes"}


def plan(denoiser, budget="5%", *, reference=None, metric=None, objective: str = "time", cond=None, space=None,
         quick: bool = False, settings: Settings | None = None, model: str | None = None, max_nfe: int | None = None,
         max_memory: int | None = None, progress: bool = True, log=None, shape=None, screen_features=None):
    """The fastest composition of ``denoiser`` whose quality change against ``reference`` stays
    within ``budget`` (upper end of the paired 95% CI), certified on fresh seeds. Returns a ``Plan``.

    budget: 0.05 or "5%"; reference: a ``Spec`` (default: the card's, else Heun/Karras ~80 NFE);
    metric: a ``quality.Measure`` or a callable ``score(x, labels)`` (default: FD in the evaluation
    network for digits / MNIST, else the pixel distribution change); objective: "time" (measured
    wall clock), "nfe", "macs" (per sample, measured), "bytes" (weights) or "memory" (peak); cond:
    labels (cycled) or ``n -> labels``; space: a ``space.Space``;
    max_nfe / max_memory: constraints (network evaluations; peak tensor bytes of a 2-sample run);
    shape: one sample's shape when the denoiser has no ``meta["model"]`` (a user's own model);
    screen_features: what the screening proxy compares (default pixels; e.g. the same preprocessing
    your metric applies)."""
    if space is None:
        space = S.Space(quick=quick, max_nfe=max_nfe, max_memory=max_memory)
    else:
        space.max_nfe = space.max_nfe if max_nfe is None else max_nfe
        space.max_memory = space.max_memory if max_memory is None else max_memory
    return Search(denoiser, budget, reference=reference, metric=metric, objective=objective, cond=cond, space=space,
                  quick=quick, settings=settings, model=model, progress=progress, log=log, shape=shape,
                  screen_features=screen_features).run()


@dataclass
class Certification:
    """``certify``'s answer for one spec: holds (upper 95% CI end within the budget), the quality
    over the seeds, and the reason string the planner records when it does not hold."""
    holds: bool
    quality: Quality
    budget: float
    reason: str

    @property
    def replication(self) -> float | None:
        """The probability that a re-measurement on as many new seeds holds again (the planner
        certifies its winner only at >= ``Settings.replicate``; ``Quality.replication``)."""
        return self.quality.replication(self.budget)


def certify(denoiser, spec: Spec, budget, *, reference=None, metric=None, seeds=None, n: int = 200, cond=None,
            shape=None) -> Certification:
    """Measure one (hand-written) ``spec`` against ``reference`` on ``seeds`` (default: the first
    six of ``plan-certification``) the way the planner certifies its winner."""
    budget = check_budget(budget)
    measure = for_model(denoiser, metric)
    if reference is None:
        reference = default_reference(denoiser, None)
    seeds = list(seeds) if seeds is not None else [SEEDS["certification"] + i for i in range(6)]
    q = measure_on(denoiser, spec, reference, measure, seeds, n, cond, shape)
    holds = q.holds(budget)
    unit = "FD" if "FD" in measure.name else "change"
    reason = f"{spec.label()}: {q.text()} {unit} ({'within' if holds else 'over'} the +{100 * budget:g}% budget)"
    return Certification(holds, q, budget, reason)
