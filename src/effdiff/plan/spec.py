"""The one composition spec: solver + steps + schedule + guidance + an ordered list of
(technique, config as a plain dict), optionally on another model (a distilled student).

Usage (the same spec everywhere: ``spec.sample``, ``ed.techniques.apply``, plan files, the CLI)::

    from effdiff.plan import Spec, parse_use
    spec = Spec("dpmpp-2m", 10, "logsnr", techniques=[("deepcache", {"interval": 3})])
    spec = Spec("dpmpp-2m", 10).use("deepcache:interval=3,branch=1", "int8")   # CLI strings
    x = spec.sample(den, n=16, cond=labels, seed=0)       # noise drawn per sample from seed
    x = spec.sample(den, z, cond=labels, seed=0)          # z: standard normal noise [B, C, H, W]
    with spec.apply(den) as h:                            # or by hand, techniques attached once
        x = h.sample(spec.guided(den), z * spec.sigmas(den)[0], spec.sigmas(den), spec.solver,
                     labels, seed=0, **spec.solver_options)
    ed.techniques.apply(spec.techniques, den)             # the ordered (name, dict) list itself
    Spec.from_dict(json.loads(text)) == spec; spec.to_dict()
    parse_use("deepcache:interval=3,branch=1") -> ("deepcache", {"interval": 3, "branch": 1})

``x`` handed to ``sample`` is unit noise: the spec's schedule decides σ_max (and a student's own
grid its own), so one noise tensor drives every spec from the same start. ``model`` names a zoo
model or student checkpoint (path stem) that runs instead of the denoiser passed in; its
schedule ``"student"`` is the student's own σ grid.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from .. import techniques as T
from .. import timesteps
from ..denoisers import guided
from ..sampling import from_prior, get as get_solver, randn

FORMAT = "effdiff-spec-1"
SPECIAL_SCHEDULES = ("full", "student", "sigmas")   # every step of a discrete table; a student's own grid; the σ's
                                                    # themselves (schedule_options: sigmas, fitted: the name they came from)

__all__ = ["Spec", "parse_use", "parse_value", "FORMAT"]


def _entry(e) -> tuple[str, dict]:
    """One technique entry as (registered name, plain dict); a config dataclass becomes the dict of
    its fields that differ from the defaults."""
    if isinstance(e, str):
        name, cfg = parse_use(e) if ":" in e else (e, {})
    elif isinstance(e, (tuple, list)) and len(e) == 2 and isinstance(e[0], str):
        name, cfg = e
    else:
        raise TypeError(f"a technique is a name, 'name:key=value,...' or (name, config); got {e!r}")
    tech = T.get(name)
    if cfg is None:
        cfg = {}
    elif dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        if not isinstance(cfg, tech.config):
            raise TypeError(f"{name} takes a {tech.config.__name__}, got {type(cfg).__name__}")
        base = tech.config()
        cfg = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
               if not _same(getattr(cfg, f.name), getattr(base, f.name))}
    elif not isinstance(cfg, dict):
        raise TypeError(f"{name}: a config is a dict of its fields or a {tech.config.__name__}, got {type(cfg).__name__}")
    tech.make_config(dict(cfg))            # unknown keys / wrong values fail here, naming the valid ones
    return name, {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}   # as JSON reads it back


def _same(a, b) -> bool:
    try:
        return bool(a == b) if not (torch.is_tensor(a) or torch.is_tensor(b)) else a is b
    except (RuntimeError, ValueError, TypeError):
        return False


@dataclass
class Spec:
    """A sampler composition: ``solver`` on ``steps`` steps of ``schedule`` (a ``timesteps``
    name, ``"METHOD:MODEL"`` fitted schedule, ``"full"`` or ``"student"``), classifier-free
    ``guidance`` scale, ``techniques`` applied in order, and ``model`` (None: the denoiser given)."""
    solver: str = "dpmpp-2m"
    steps: int = 10
    schedule: str = "logsnr"
    guidance: float = 1.0
    techniques: list = field(default_factory=list)
    model: str | None = None
    solver_options: dict = field(default_factory=dict)
    schedule_options: dict = field(default_factory=dict)

    def __post_init__(self):
        get_solver(self.solver)                         # KeyError listing the solvers
        get_solver(self.solver).options(self.solver_options)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if not isinstance(self.schedule, str) or not (self.schedule in timesteps.SCHEDULES or self.schedule in
                                                      SPECIAL_SCHEDULES or timesteps.is_fitted(self.schedule)):
            raise KeyError(f"unknown schedule {self.schedule!r}; known: {', '.join([*timesteps.SCHEDULES, *SPECIAL_SCHEDULES])}"
                           " or 'METHOD:MODEL' (a fitted schedule)")
        if self.schedule == "sigmas":
            sig = self.schedule_options.get("sigmas")
            if sig is None or len(timesteps.check_sigmas(sig)) != self.steps + 1:
                raise ValueError(f"schedule 'sigmas' needs schedule_options['sigmas']: {self.steps + 1} decreasing σ's "
                                 f"ending in 0 for {self.steps} steps, got {None if sig is None else len(sig)}")
        g = self.guidance
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g < 0:
            raise ValueError(f"guidance must be a finite scale >= 0, got {g!r}")
        self.guidance = float(g)
        if not isinstance(self.techniques, (list, tuple)):
            raise TypeError(f"techniques must be a list of (name, config), got {type(self.techniques).__name__}")
        self.techniques = [_entry(e) for e in self.techniques]
        if self.model is not None and not isinstance(self.model, str):
            raise TypeError(f"model must be a zoo name or checkpoint path stem, got {self.model!r}")

    # -- building ---------------------------------------------------------------------------
    def use(self, *entries) -> "Spec":
        """A copy with ``entries`` ('name:key=value,...', names or (name, config)) appended."""
        return dataclasses.replace(self, techniques=[*self.techniques, *entries])

    def replace(self, **changes) -> "Spec":
        return dataclasses.replace(self, **changes)

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.techniques]

    @property
    def schedule_name(self) -> str:
        """The schedule as people name it: a fitted schedule stored as its σ's (``"sigmas"``) by its fit's name."""
        return (self.schedule_options.get("fitted") or "sigmas") if self.schedule == "sigmas" else self.schedule

    def label(self) -> str:
        """A short readable name: ``[model:]solver/schedule/steps[+g2][ + tech(k=v)]...``."""
        head = (f"{self.model}:" if self.model else "") + f"{self.solver}/{self.schedule_name}/{self.steps}"
        if self.guidance != 1.0:
            head += f"+g{self.guidance:g}"
        parts = []
        for n, c in self.techniques:
            shown = {k: v for k, v in c.items() if k not in T.get(n).needs}     # calibrated parts are not a setting
            parts.append(n + ("(" + ",".join(f"{k}={_short(v)}" for k, v in sorted(shown.items())) + ")" if shown else ""))
        return " + ".join([head, *parts])

    # -- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-able dict (``from_dict`` inverts it). A config value that is not JSON (a
        calibrated tensor state) is an error here: plan files store those in safetensors."""
        d = {"format": FORMAT, "solver": self.solver, "steps": self.steps, "schedule": self.schedule,
             "guidance": self.guidance, "techniques": [[n, dict(c)] for n, c in self.techniques],
             "model": self.model, "solver_options": dict(self.solver_options),
             "schedule_options": dict(self.schedule_options)}
        try:
            json.dumps(d, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TypeError(f"spec {self.label()!r} holds a value JSON cannot store ({e}); calibrated parts "
                            "travel in a plan file (effdiff.plan.file.save)") from None
        return json.loads(json.dumps(d))      # tuples -> lists, a deep copy

    @classmethod
    def from_dict(cls, d: dict) -> "Spec":
        if not isinstance(d, dict):
            raise TypeError(f"a spec is a JSON object, got {type(d).__name__}")
        fmt = d.get("format", FORMAT)
        if fmt != FORMAT:
            raise ValueError(f"not an effdiff spec (format {fmt!r}, expected {FORMAT!r})")
        keys = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - keys - {"format"})
        if bad:
            raise ValueError(f"unknown spec key {bad[0]!r}; spec keys: {', '.join(sorted(keys))}")
        kw = {k: v for k, v in d.items() if k in keys}
        kw["techniques"] = [tuple(e) if isinstance(e, list) else e for e in kw.get("techniques", [])]
        return cls(**kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Spec":
        return cls.from_dict(json.loads(text))

    # -- running ----------------------------------------------------------------------------
    def denoiser(self, denoiser):
        """What runs: ``denoiser``, or the model this spec names (loaded once per process)."""
        return denoiser if self.model is None else _load_model(self.model)

    def sigmas(self, denoiser) -> torch.Tensor:
        """The σ schedule (float64, ending in 0) of this spec for ``denoiser``'s process."""
        den = self.denoiser(denoiser)
        if self.schedule == "student":
            if not hasattr(den, "grid"):
                raise ValueError(f"schedule 'student' needs a distilled student; {type(den).__name__} has no grid")
            return den.grid(self.steps)
        process = getattr(den, "process", None)
        if process is None:
            raise TypeError(f"{type(den).__name__} has no .process; pass a denoiser built on an effdiff process")
        if self.schedule == "full":
            return timesteps.full(process)
        if self.schedule == "sigmas":
            return timesteps.check_sigmas(self.schedule_options["sigmas"])
        return timesteps.get(self.schedule, self.steps, process, **self.schedule_options)

    def inline(self, denoiser) -> "Spec":
        """This spec with a fitted schedule (``"METHOD:MODEL"`` or a ``.json`` file) replaced by its σ's at
        ``steps`` (schedule ``"sigmas"``, labelled with the fitted name): what a plan file stores, so that it
        samples the same without the schedule file. Any other spec is returned as is."""
        if not timesteps.is_fitted(self.schedule):
            return self
        return self.on_sigmas(self.sigmas(denoiser), self.schedule)

    def on_sigmas(self, sigmas, fitted: str) -> "Spec":
        """This spec on the schedule ``sigmas`` itself (``steps`` + 1 of them, ending in 0), labelled ``fitted``."""
        return self.replace(schedule="sigmas", schedule_options={"sigmas": [float(v) for v in sigmas], "fitted": fitted})

    def configs(self) -> list:
        """[(Technique, config dataclass)] in order."""
        return [(T.get(n), T.get(n).make_config(dict(c))) for n, c in self.techniques]

    def apply(self, denoiser):
        """Attach the techniques, in order, to ``self.denoiser(denoiser)``; one ``Handle``."""
        den = self.denoiser(denoiser)
        if not self.techniques:
            from ..hooks import Handle
            return Handle("none", [])
        return T.apply(list(self.techniques), den)

    def guided(self, denoiser):
        """The callable sampled: the model with this spec's guidance scale."""
        return guided(self.denoiser(denoiser), self.guidance)

    def noise(self, denoiser, n: int, seed: int = 0, shape=None) -> torch.Tensor:
        """Unit noise [n, *shape] drawn per sample from ``seed`` (``sampling.randn``); ``shape``
        defaults to the model's (``meta["model"]``: in_channels, image_size)."""
        if shape is None:
            m = (getattr(self.denoiser(denoiser), "meta", None) or {}).get("model")
            if m is None:
                raise ValueError("cannot tell the sample shape of this denoiser; pass x (unit noise) or shape")
            shape = (m.get("in_channels", 1), m["image_size"], m["image_size"])
        return randn((n, *shape), seed=seed)

    def run(self, denoiser, handle, x, cond=None, seed: int | None = 0, return_info: bool = False, **kw):
        """Sample from unit noise ``x`` with the techniques already attached (``handle``)."""
        den = self.denoiser(denoiser)
        sig = self.sigmas(denoiser)
        x_T = from_prior(den, x * float(sig[0]), cond)
        return handle.sample(self.guided(denoiser), x_T, sig, self.solver, cond, seed=seed,
                             return_info=return_info, **self.solver_options, **kw)

    def sample(self, denoiser, x=None, cond=None, seed: int | None = 0, *, n: int | None = None, shape=None,
               return_info: bool = False, **kw):
        """Samples of this spec from unit noise ``x`` (or ``n`` samples of seeded noise of the
        model's ``shape``): apply, ``ed.sample``, remove. Returns x, or a ``SampleResult`` with
        ``return_info=True``."""
        if x is None:
            if n is None:
                raise ValueError("pass x (unit noise [B, ...]) or n")
            x = self.noise(denoiser, n, 0 if seed is None else seed, shape)
        with self.apply(denoiser) as h:
            return self.run(denoiser, h, x, cond, seed, return_info, **kw)


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "/".join(map(_short, v))
    if isinstance(v, (int, str, bool)) or v is None:
        return str(v)
    return type(v).__name__


@lru_cache(maxsize=8)
def _load_model(ref: str):
    """A zoo model or a student checkpoint by name / path stem."""
    from .. import zoo
    if ref in zoo.names() and "student" not in zoo.card(ref):
        return zoo.load(ref)
    from ..distill import load
    return load(ref)


# ------------------------------------------------------------------------------------------
# CLI strings: "deepcache:interval=3,branch=1"
# ------------------------------------------------------------------------------------------

_NONE = ("none", "null")
_BOOL = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _alternatives(annotation: str) -> list[str]:
    """Top-level alternatives of a type annotation string ('int | None' -> ['int', 'None'])."""
    out, depth, cur = [], 0, ""
    for ch in annotation:
        depth += (ch == "[") - (ch == "]")
        if ch == "|" and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def _one(kind: str, text: str):
    """``text`` read as one type of an annotation (ValueError if it is not that)."""
    t = text.strip()
    base = kind.split("[")[0].strip()
    if base == "None":
        if t.lower() in _NONE:
            return None
    elif base == "bool":
        if t.lower() in _BOOL:
            return _BOOL[t.lower()]
    elif base == "int":
        return int(t)
    elif base == "float":
        return float(t)
    elif base == "str":
        return t
    elif base in ("tuple", "list"):
        inner = kind[kind.index("[") + 1:kind.rindex("]")] if "[" in kind else "str"
        inner = inner.split(",")[0].strip()
        items = [parse_value(inner, s) for s in t.split("/") if s != ""]
        return tuple(items) if base == "tuple" else items
    elif base == "dict":
        v = json.loads(t)
        if isinstance(v, dict):
            return v
    raise ValueError(f"not a {kind}")


def parse_value(annotation: str, text: str):
    """``text`` converted to the first alternative of ``annotation`` it reads as (None, bool,
    int, float, tuple as 'a/b/c', dict as JSON, str), in that order of preference."""
    order = {"None": 0, "bool": 1, "int": 2, "float": 3, "tuple": 4, "list": 4, "dict": 5, "str": 6}
    alts = sorted(_alternatives(annotation), key=lambda a: order.get(a.split("[")[0].strip(), 7))
    for kind in alts:
        try:
            return _one(kind, text)
        except (ValueError, IndexError, json.JSONDecodeError):
            continue
    raise ValueError(f"{text!r} is not a {annotation}")


def _type_name(t) -> str:
    """A field's annotation as text ('int | None'), whether or not the module defers annotations."""
    if isinstance(t, str):
        return t
    if isinstance(t, type):
        return t.__name__
    return str(t).replace("typing.", "").replace("NoneType", "None")


def parse_use(text: str) -> tuple[str, dict]:
    """``"name:key=value,key=value"`` -> (name, {key: typed value}); values are typed by the
    technique's config dataclass fields (tuples as ``a/b/c``); a bad key names the valid ones."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"a technique is 'name' or 'name:key=value,...', got {text!r}")
    name, _, rest = text.strip().partition(":")
    tech = T.get(name.strip())
    fields = {f.name: _type_name(f.type) for f in dataclasses.fields(tech.config)}
    cfg = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise ValueError(f"{text!r}: {item!r} is not key=value")
        if key not in fields:
            raise ValueError(f"{tech.name} has no option {key!r}; its options: {', '.join(fields)}")
        try:
            cfg[key] = parse_value(fields[key], value)
        except ValueError:
            raise ValueError(f"{tech.name}: {key}={value!r} is not a {fields[key]}") from None
    tech.make_config(dict(cfg))
    return tech.name, cfg
