"""The plan: what a search found and certified, as a portable file.

``plan.json`` holds the spec (solver, schedule, steps, guidance, ordered techniques with plain dict
configs), the reference it was compared with, the SHA-256 of the weights it was made for, machine
and torch version, the search / certification seeds, the budget, the certified quality change and
speed-up with their intervals, every candidate's measured cost and quality, the Pareto front and
why each rejected candidate was rejected. Calibrated parts (PTQ scale tables and quantized weights)
go to ``plan.safetensors`` beside it; the JSON names each tensor. Writes are atomic; nothing is
unpickled. Applying a plan to other weights raises ``WeightsMismatch``.

    p = ed.plan(den, budget="5%")
    p.save("plan.json"); p = Plan.load("plan.json")
    x = p.sample(den, n=16, cond=labels, seed=0)
    verify(p, den).holds
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import techniques as T
from ..io import atomic_write
from .quality import DistributionChange, EvalFD, Quality, for_model
from .spec import Spec

FORMAT = "effdiff-plan-1"

__all__ = ["Plan", "WeightsMismatch", "weights_sha256", "verify", "verification_seeds", "Verification", "FORMAT"]


class WeightsMismatch(ValueError):
    """A plan applied to weights other than those it was made (and certified) for."""


def weights_sha256(den) -> str | None:
    """SHA-256 over the denoiser's tensors (name, dtype, shape, bytes; sorted by name); None for a
    callable without parameters."""
    if not isinstance(den, torch.nn.Module):
        return None
    h = hashlib.sha256()
    for name, t in sorted(den.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# calibrated parts: nested dicts / lists with tensors -> JSON tree + named tensors
# ---------------------------------------------------------------------------------------------

def _encode(v, prefix: str, tensors: dict):
    if torch.is_tensor(v):
        tensors[prefix] = v.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(v, dict):
        if all(isinstance(k, str) for k in v):
            return {"__dict__": {k: _encode(u, f"{prefix}.{k}", tensors) for k, u in v.items()}}
        return {"__items__": [[_encode(k, f"{prefix}.k{i}", tensors), _encode(u, f"{prefix}.{i}", tensors)]
                              for i, (k, u) in enumerate(v.items())]}
    if isinstance(v, (list, tuple)):
        return {"__tuple__" if isinstance(v, tuple) else "__list__":
                [_encode(u, f"{prefix}.{i}", tensors) for i, u in enumerate(v)]}
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if isinstance(v, torch.dtype):
        return {"__dtype__": str(v).removeprefix("torch.")}
    if dataclasses.is_dataclass(v) and type(v).__module__.startswith("effdiff."):
        return {"__dataclass__": f"{type(v).__module__}:{type(v).__qualname__}",
                "fields": {f.name: _encode(getattr(v, f.name), f"{prefix}.{f.name}", tensors)
                           for f in dataclasses.fields(v) if f.init}}
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:        # a numpy scalar
        return v.item()
    raise TypeError(f"a calibrated part of type {type(v).__name__} at {prefix!r} cannot be stored in a plan file")


def _dataclass(path: str):
    """An effdiff dataclass by 'module:QualName' (nothing outside effdiff is ever constructed)."""
    import importlib
    module, _, name = path.partition(":")
    if not module.startswith("effdiff.") or "." in name:
        raise ValueError(f"a plan file may only name effdiff dataclasses, got {path!r}")
    cls = getattr(importlib.import_module(module), name, None)
    if cls is None or not dataclasses.is_dataclass(cls):
        raise ValueError(f"{path!r} is not an effdiff dataclass")
    return cls


def _decode(v, tensors: dict):
    if isinstance(v, dict):
        if "__tensor__" in v:
            if v["__tensor__"] not in tensors:
                raise ValueError(f"the plan's tensors file lacks {v['__tensor__']!r}")
            return tensors[v["__tensor__"]]
        if "__dict__" in v:
            return {k: _decode(u, tensors) for k, u in v["__dict__"].items()}
        if "__items__" in v:
            return {_decode(k, tensors): _decode(u, tensors) for k, u in v["__items__"]}
        if "__tuple__" in v:
            return tuple(_decode(u, tensors) for u in v["__tuple__"])
        if "__list__" in v:
            return [_decode(u, tensors) for u in v["__list__"]]
        if "__dtype__" in v:
            dt = getattr(torch, v["__dtype__"], None)
            if not isinstance(dt, torch.dtype):
                raise ValueError(f"unknown dtype {v['__dtype__']!r} in a plan file")
            return dt
        if "__dataclass__" in v:
            return _dataclass(v["__dataclass__"])(**{k: _decode(u, tensors) for k, u in v["fields"].items()})
        raise ValueError(f"unknown calibrated-part node {sorted(v)}")
    return v


def _split(spec: Spec) -> tuple[dict, list, dict]:
    """(JSON spec, calibrated entries, tensors): the ``needs`` fields of each technique go to
    tensors; everything else stays in the plain dict configs."""
    plain, calibrated, tensors = [], [], {}
    for i, (name, cfg) in enumerate(spec.techniques):
        needs = T.get(name).needs
        kept = {k: v for k, v in cfg.items() if k not in needs}
        parts = {k: cfg[k] for k in needs if cfg.get(k) is not None}
        if parts:
            calibrated.append({"index": i, "technique": name,
                               "fields": {k: _encode(v, f"t{i}.{name}.{k}", tensors) for k, v in parts.items()}})
        plain.append((name, kept))
    return spec.replace(techniques=plain).to_dict(), calibrated, tensors


def _join(spec_d: dict, calibrated: list, tensors: dict) -> Spec:
    spec = Spec.from_dict(spec_d)
    entries = [list(e) for e in spec.techniques]
    for c in calibrated:
        i = c["index"]
        if not 0 <= i < len(entries) or entries[i][0] != c["technique"]:
            raise ValueError(f"calibrated part {i} ({c['technique']}) does not match the spec's techniques")
        entries[i][1] = {**entries[i][1], **{k: _decode(v, tensors) for k, v in c["fields"].items()}}
    return spec.replace(techniques=[tuple(e) for e in entries])


# ---------------------------------------------------------------------------------------------
# the plan
# ---------------------------------------------------------------------------------------------

@dataclass
class Plan:
    """A certified composition and everything that backs it (see the module docstring)."""
    spec: Spec | None                      # None: the search certified nothing inside the budget
    reference: Spec
    budget: float
    measure: str
    weights_sha256: str | None
    model: str | None = None
    objective: str = "time"
    certified: dict | None = None          # Quality.as_dict() on fresh seeds
    selection: dict | None = None          # Quality.as_dict() on selection seeds
    speed: dict = field(default_factory=dict)
    seeds: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)
    candidates: list = field(default_factory=list)
    pareto: list = field(default_factory=list)
    rejected: list = field(default_factory=list)
    pruned: list = field(default_factory=list)
    systems: list = field(default_factory=list)
    machine: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    measure_key: dict = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        """Certified on fresh seeds (upper CI end within the budget)."""
        return bool(self.certified) and self.certified["ci"][1] is not None and self.certified["ci"][1] <= self.budget

    def summary(self) -> str:
        if self.spec is None:
            return (f"no composition certified within +{100 * self.budget:g}% {self.measure} of "
                    f"{self.reference.label()} ({self.search.get('candidates')} candidates tried; see rejected)"
                    + self._advice_text())
        q = self.certified["text"] if self.certified else "not certified"
        sp = self.speed.get("speedup_vs_reference")
        return (f"{self.spec.label()}: {q} {self.measure} vs {self.reference.label()} on fresh seeds "
                f"(budget +{100 * self.budget:g}%)" + (f", {sp:.2f}x faster (wall clock, this machine)" if sp else "")
                + self._one_off_text() + self._no_systems_text() + self._advice_text())

    def _advice_text(self) -> str:
        """Certifications that failed for want of evidence, not quality, and the re-run that would likely pass."""
        return "".join(f"\n  {a['text']}" for a in self.search.get("advice") or [])

    def _no_systems_text(self) -> str:
        """A search that tried no systems switches (``--quick``) says so: compile may still add speed."""
        if self.search.get("systems_tried", None) == []:
            return ("; no systems switches tried (quick search): `--use compile` may add speed, and on a machine with "
                    "native bf16 `--use autocast` (it changes the samples: `effdiff plan verify` the result)")
        return ""

    def _one_off_text(self) -> str:
        """The kept systems switches' one-off cost (compile: the first call's compilation)."""
        kept = [d for d in self.systems if d.get("kept") and d.get("one_off_s", 0) >= 1]
        return "".join(f"; {d['switch']}: one-off {d['one_off_s']:.0f} s on the first call (samples within "
                       f"{d['max_rel_deviation']:.1e} relative of the run without it)" for d in kept)

    # -- using it -----------------------------------------------------------------------------
    def check_weights(self, den) -> None:
        have = weights_sha256(den)
        if self.weights_sha256 is not None and have != self.weights_sha256:
            raise WeightsMismatch(f"this plan was made for weights sha256 {self.weights_sha256[:16]}..., "
                                  f"these are {('sha256 ' + have[:16] + '...') if have else 'not a torch module'}; "
                                  "a plan is certified for one set of weights: run ed.plan on these")

    def _usable(self, den) -> None:
        if self.spec is None:
            raise ValueError("this plan holds no certified composition (its search found none within the budget)")
        self.check_weights(den)

    def apply(self, den):
        self._usable(den)
        return self.spec.apply(den)

    def sample(self, den, x=None, cond=None, seed=0, **kw):
        self._usable(den)
        return self.spec.sample(den, x, cond, seed, **kw)

    # -- files --------------------------------------------------------------------------------
    def to_dict(self) -> tuple[dict, dict]:
        spec_d, calibrated, tensors = _split(self.spec) if self.spec is not None else (None, [], {})
        d = {"format": FORMAT, "spec": spec_d, "calibrated": calibrated, "reference": self.reference.to_dict(),
             "budget": self.budget, "measure": self.measure, "measure_key": self.measure_key, "objective": self.objective,
             "model": self.model, "weights_sha256": self.weights_sha256, "certified": self.certified,
             "selection": self.selection, "speed": self.speed, "seeds": self.seeds, "search": self.search,
             "machine": self.machine, "settings": self.settings, "systems": self.systems, "pareto": self.pareto,
             "rejected": self.rejected, "pruned": self.pruned, "candidates": self.candidates}
        return d, tensors

    def save(self, path) -> Path:
        """``path`` (.json) and, when calibrated tensors exist, ``path`` with .safetensors; atomic."""
        from safetensors.torch import save as st_save
        path = Path(path)
        if path.suffix != ".json":
            raise ValueError(f"a plan file ends in .json, got {path.name!r}")
        d, tensors = self.to_dict()
        if tensors:
            d["tensors_file"] = path.with_suffix(".safetensors").name
            d["tensors_sha256"] = hashlib.sha256(st_save(tensors)).hexdigest()
            atomic_write(path.with_suffix(".safetensors"), st_save(tensors))
        atomic_write(path, json.dumps(d, indent=1, allow_nan=False, default=_json_default))
        return path

    @classmethod
    def load(cls, path) -> "Plan":
        from ..io import read_json
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"cannot read plan {path}: no such file")
        d = read_json(path, "effdiff plan")
        if d.get("format") != FORMAT:
            raise ValueError(f"{path} is not an effdiff plan (format {d.get('format')!r}, expected {FORMAT!r})")
        tensors = {}
        if d.get("tensors_file"):
            from safetensors.torch import load as st_load
            tp = path.parent / d["tensors_file"]
            data = tp.read_bytes()
            if hashlib.sha256(data).hexdigest() != d.get("tensors_sha256"):
                raise ValueError(f"{tp} does not match the SHA-256 its plan records (a different or corrupt file)")
            tensors = st_load(data)
        spec = _join(d["spec"], d.get("calibrated", []), tensors) if d.get("spec") is not None else None
        keys = {f for f in cls.__dataclass_fields__} - {"spec", "reference"}
        return cls(spec=spec, reference=_reference_from(d["reference"]), **{k: d[k] for k in keys if k in d})

    # -- from a search ------------------------------------------------------------------------
    @classmethod
    def from_search(cls, s, winner, attempts, systems, timing, wall_s: float) -> "Plan":
        from ..io import machine
        recs = list(s.records.values())
        speed = dict(timing)
        single = s.best_single()
        return cls(
            spec=s.sampler.prepare(winner.spec).inline(s.den) if winner is not None else None, reference=s.reference, budget=s.budget, measure=s.measure.name,
            weights_sha256=weights_sha256(s.den), model=s.model, objective=s.objective,
            certified=({**winner.certified.as_dict(), "replication": winner.certified.replication(s.budget)}
                       if winner is not None else None),
            selection=winner.quality.as_dict() if winner is not None and winner.quality else None,
            speed=speed, seeds=_seeds_used(s), machine={**machine(), "torch": torch.__version__},
            search={"wall_s": round(wall_s, 1), "sample_nfe": s.sampler.sample_nfe, "candidates": len(recs),
                    "certification_attempts": attempts, "found": winner is not None,
                    "best_single": single.label if single else None,
                    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **s.cost_breakdown(),
                    "reference_worker": s.sampler.prefetched, "systems_tried": list(s.space.systems),
                    "fitted_schedules": s.fitted_info, "advice": s.advice},
            candidates=[r.as_dict() for r in recs], pareto=_pareto(s, recs),
            rejected=[r.rejected for r in recs if r.rejected], pruned=[list(p) for p in s.space.pruned],
            systems=systems, settings={**vars(s.set), "shape": s.sampler.shape, "screen_eval_ms": s.screen_eval_ms}, measure_key=_measure_key(s.measure))


def _reference_from(d: dict):
    if isinstance(d, dict) and "external" in d:
        from .runs import External
        return External(None, d["external"])
    return Spec.from_dict(d)


def _json_default(v):
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, float):
        return None
    raise TypeError(f"{type(v).__name__} is not JSON")


def _seeds_used(s) -> dict:
    sel = sorted({x for r in s.records.values() if r.quality for x in r.quality.seeds})
    cert = sorted({x for r in s.records.values() if r.certified for x in r.certified.seeds})
    from .runs import OTHER, SEEDS
    return {"screening": [SEEDS["screening"], SEEDS["screening"] + OTHER], "selection": sel,
            "certification": cert, "independent_reference_batch_offset": OTHER, "calibration": SEEDS["calibration"]}


def _pareto(s, recs) -> list[dict]:
    """Candidates measured on selection seeds that no other beats on both cost and quality change."""
    pts = [(s.cost(r), r.quality.mean, r) for r in recs if r.quality is not None and r.ms]
    front = [(c, q, r) for c, q, r in pts if not any(c2 <= c and q2 <= q and (c2 < c or q2 < q) for c2, q2, _ in pts)]
    return [{"label": r.label, "cost": c, "quality": r.quality.text()} for c, q, r in sorted(front, key=lambda t: t[0])]


def _measure_key(m) -> dict:
    if isinstance(m, EvalFD):
        return {"kind": "eval-fd", "dataset": m.dataset}
    if isinstance(m, DistributionChange) and m.features is None:
        return {"kind": "distribution", "metric": m.kind}
    return {"kind": "user"}


def _measure_from(p: Plan, den, metric):
    if metric is not None:
        return for_model(den, metric)
    k = p.measure_key or {}
    if k.get("kind") == "eval-fd":
        return EvalFD(k["dataset"])
    if k.get("kind") == "distribution":
        return DistributionChange(kind=k.get("metric", "sw"))
    raise ValueError(f"this plan was certified with a user metric ({p.measure}); pass metric= to verify it")


@dataclass
class Verification:
    """``verify``'s answer: the re-measured quality on new seeds and whether the plan still holds."""
    holds: bool
    quality: Quality
    budget: float
    seeds: list
    # the chance, forecast from the plan's certification values before this re-measurement, that an interval on
    # as many seeds holds (metrics.stats.certification_power without the replication rule); None without them
    expected: float | None = None

    @property
    def verdict(self) -> str:
        """"holds" (upper CI end within the budget), "over" (the whole interval above it: the plan is
        measurably over its budget on these seeds) or "unsure" (the interval contains the budget)."""
        if self.holds:
            return "holds"
        return "over" if self.quality.lower > self.budget else "unsure"

    def text(self) -> str:
        why = {"holds": "", "over": ", measurably over the budget",
               "unsure": ", the interval contains the budget: neither shown within nor over it"}[self.verdict]
        exp = ("" if self.expected is None else f"; from its certification, {len(self.seeds)} seeds were expected to "
               f"hold with probability {self.expected:.2f}" + (" (a check this small is weak: give it more seeds)"
                                                               if self.expected < 0.8 else ""))
        return (f"{'holds' if self.holds else 'does NOT hold'}: {self.quality.text()} on seeds "
                f"{self.seeds[0]}-{self.seeds[-1]} (budget +{100 * self.budget:g}%, upper 95% CI end{why}){exp}")


def verification_seeds(plan: Plan, k: int | None = None, offset: int = 0,
                       range_name: str = "plan-verification") -> list[int]:
    """``k`` seeds of the registered range ``range_name`` (``plan-verification``, 500-599, or
    ``plan-verification-2``, 3200-3399) starting ``offset`` into it (default ``k``: as many as
    certified the plan, else 6); seeds past the range's end are a clear error."""
    from .. import seeds as SR
    from .runs import SEEDS  # noqa: F401 -- registers plan-verification
    if range_name not in SR.PLAN_VERIFICATION_RANGES:
        raise ValueError(f"a verification range is {' or '.join(SR.PLAN_VERIFICATION_RANGES)}, got {range_name!r}")
    k = k or len((plan.certified or {}).get("seeds") or []) or 6
    return SR.get(range_name).seeds(k, offset)


def verify(plan: Plan, den, seeds=None, n: int | None = None, metric=None, cond=None, shape=None,
           reference=None) -> Verification:
    """Re-measure ``plan`` against its reference on ``seeds`` (default: the ``plan-verification``
    range, never used by a search; as many as certified the plan) and say whether the upper CI end
    is still within its budget.
    ``reference``: the callable of an external reference (``search.External``) the file names."""
    from .runs import measure_on
    if not isinstance(plan, Plan):
        plan = Plan.load(plan)
    plan._usable(den)
    measure = _measure_from(plan, den, metric)
    seeds = list(seeds) if seeds is not None else verification_seeds(plan)
    n = n or plan.settings.get("n_fresh") or plan.settings.get("n", 200)      # the certification's batch
    q = measure_on(den, plan.spec, reference or plan.reference, measure, seeds, n, cond,
                   shape or plan.settings.get("shape"))
    return Verification(q.holds(plan.budget), q, plan.budget, seeds, expected_to_hold(plan, len(seeds)))


def expected_to_hold(plan: Plan, k: int) -> float | None:
    """The chance that a re-measurement on ``k`` new seeds holds, forecast from the plan's certification values
    (``metrics.stats.certification_power`` without the replication rule: the interval alone, as ``verify`` judges);
    None for a plan without them, or an unpaired certification (its pooled reference is not in the forecast)."""
    from ..metrics.stats import certification_power
    c = plan.certified or {}
    vals = c.get("values") or []
    if len(vals) < 2 or k < 2 or c.get("ref_scores"):
        return None
    return certification_power(vals, plan.budget, k, replicate=None)
