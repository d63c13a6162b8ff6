"""The candidate space of a plan, built from the registries: every applicable fixed-grid solver x
NFE x schedule (fitted AYS / DP schedules of the model included when they ship), every
applicable technique with a small parameter grid (a technique may declare ``grid``; else
``GRIDS`` here), the zoo's distilled students of this model, guidance scales, and systems
switches. Compositions are candidates of their own and are measured, never assumed additive.

Pruned before anything runs, each with its reason: techniques whose ``why_not`` says they do not
apply; configurations over ``max_nfe``; a cache interval that reuses nothing at that step count;
simulated ("fake") quantization under the wall-clock objective (it computes in fp32 and cannot be
faster: it is in the space for ``objective="bytes"``); techniques that need training
(``needs`` beyond calibration) unless asked for; duplicates (same label).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import techniques as T, timesteps
from ..sampling import get as get_solver, names as solver_names
from .spec import Spec

__all__ = ["Space", "Candidate", "GRIDS", "base_specs", "technique_grid", "students_of", "nfe_of", "steps_for"]

# default parameter grids (plain dict configs) of the techniques that need no training
GRIDS: dict[str, list[dict]] = {
    "deepcache": [{"interval": 2}, {"interval": 3}, {"interval": 4}],
    "fora": [{"interval": 2}, {"interval": 3}],
    "delta-dit": [{"interval": 2}],
    "adaptive": [{"threshold": 0.05}, {"threshold": 0.1}, {"threshold": 0.2}],
    "ase": [{"max_drop": 1}, {"max_drop": 2}],
    "tgate": [{"gate_step": 5}],
    "int8": [{}],
    "ptq": [{"w_bits": 8, "a_bits": 8}, {"w_bits": 4, "a_bits": 8, "ptqd": True}],
    "ptq-naive": [{"w_bits": 8, "a_bits": 8}],
    "svdquant": [{"w_bits": 4, "a_bits": 8}],
}
SIMULATED = ("ptq", "ptq-naive", "svdquant", "qat")         # fake quantization: bytes, not speed
CALIBRATED = ("ptq", "ptq-naive", "svdquant")                  # prepared on a sampling run, stored with the plan
TRAINED = ("block-caching", "l2c", "deediff", "qat", "diff-pruning", "head-pruning", "depth-pruning")
FIT_METHODS = ("ays", "dp")                                    # schedule fitters a search may run (Space.fit)
FIT_STEPS = 10                                                 # steps a search fits at (as the shipped fits)
SKIP = ("nirvana",)                                            # request-level: a cache across requests, not one run
SYSTEMS = ("autocast", "channels-last", "compile")   # tried on the winner, in this order (systems pass; autocast
                                                    # where the machine has native bf16 / fp16); "sdpa" on request
STOCHASTIC = ("ddpm", "euler-ancestral", "dpmpp-2m-sde", "dpmpp-3m-sde", "euler-maruyama", "sa-solver")
NFE_GRID = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20)
QUICK_NFE = (2, 3, 4, 5, 6, 8, 10, 15)
PREFERRED_NAMES = ("ddpm", "dpmpp-2m", "dpm-solver-3", "unipc")     # the name kept for a group of aliases
QUICK_SOLVERS = ("ddim", "heun", "dpmpp-2m", "dpmpp-3m", "unipc", "ipndm", "ddpm", "dpmpp-2m-sde")


def _nfe_probe(solver: str, steps: int) -> int:
    import torch
    from ..sampling import sample
    sig = torch.cat([torch.linspace(10, 0.1, steps, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    return sample(lambda x, s: torch.zeros_like(x), torch.zeros(1, 1), sig, solver=solver, seed=0, return_info=True).nfe


_NFE: dict = {}


def nfe_of(solver: str, steps: int) -> int:
    """NFE a solver spends on ``steps`` steps (counted once on a zero denoiser)."""
    key = (solver, steps)
    if key not in _NFE:
        _NFE[key] = _nfe_probe(solver, steps)
    return _NFE[key]


def steps_for(solver: str, nfe: int) -> int | None:
    """The most steps whose NFE fits ``nfe`` (None when even one step does not)."""
    best = None
    for steps in range(1, nfe + 1):
        if nfe_of(solver, steps) > nfe:
            break
        best = steps
    return best


def fixed_grid_solvers() -> list[str]:
    """Registered solvers that run a fixed grid (loop-form adaptive / parallel ones and the
    consistency students' sampler excluded), one name per distinct (function, defaults) pair:
    aliases such as ``dpmpp`` / ``dpmpp-2m`` are one solver."""
    groups: dict = {}
    for s in solver_names():
        sol = get_solver(s)
        if not sol.loop and s != "consistency":
            groups.setdefault((sol.fn, tuple(sorted(sol.defaults.items())), sol.final), []).append(s)
    return sorted(min(names, key=lambda n: (n not in PREFERRED_NAMES, -len(n))) for names in groups.values())


def fitted_schedules(model: str | None) -> list[str]:
    """``ays:MODEL`` / ``dp:MODEL`` when the zoo ships them for ``model``, and its end-to-end fitted ones
    (``e2e:MODEL-SOLVER-STEPS``, each tried only with its solver at its step count: ``fitted_for``)."""
    if not model:
        return []
    from ..zoo import WEIGHTS
    d = WEIGHTS.parent / "schedules"
    names = (p.stem.replace("-", ":", 1) for p in d.glob(f"e2e-{model}-*.json"))
    e2e = sorted(n for n in names if fitted_for(n, model))
    return [f"{m}:{model}" for m in ("ays", "dp") if (d / f"{m}-{model}.json").is_file()] + e2e


def fitted_for(schedule: str, model: str | None = None) -> tuple[str, int] | None:
    """(solver, steps) an end-to-end fitted schedule was fitted for: a shipped ``e2e:...`` name or a
    ``.json`` file written by ``effdiff schedules fit --method e2e`` (None for any other schedule; for
    ``model``, None too when the file was fitted for another model)."""
    if not (schedule.startswith("e2e:") or schedule.endswith(".json")):
        return None
    _, meta = timesteps.load_schedule(timesteps.fitted_key(schedule), with_meta=True)
    if meta.get("method") != "e2e" or (model is not None and meta.get("model") != model):
        return None
    return meta.get("solver"), meta.get("steps")


def technique_grid(tech) -> list[dict]:
    """A technique's parameter grid: its declared ``grid`` attribute, else ``GRIDS``, else []."""
    g = getattr(tech, "grid", None)
    return [dict(c) for c in (g if g is not None else GRIDS.get(tech.name, []))]


def students_of(model: str | None) -> list[tuple[str, int, str]]:
    """(zoo student, steps, solver) for the distilled students whose root teacher is ``model``."""
    if not model:
        return []
    from .. import zoo
    out = []
    for n in zoo.names():
        meta = zoo.card(n)
        st = meta.get("student")
        if not st or meta.get("card", {}).get("root_teacher", meta.get("card", {}).get("teacher")) != model:
            continue
        for k in ((1, 2, 4) if st["solver"] == "consistency" else (st["steps"],)):
            out.append((n, k, st["solver"]))
    return out


@dataclass
class Candidate:
    """A spec with what the search knows of it: ``family`` tags (base, caching, quant, student,
    systems...), its NFE, and its results per stage."""
    spec: Spec
    nfe: int
    families: tuple = ()
    parent: str | None = None
    results: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.spec.label()


@dataclass
class Space:
    """What the planner may try. ``None`` fields take the defaults above (``quick``: fewer)."""
    solvers: list | None = None
    nfe: tuple | None = None
    schedules: list | None = None
    techniques: dict | None = None          # name -> [dict config]; None: every applicable technique's grid
    students: bool = True
    guidance: tuple = (1.0,)
    systems: tuple | None = None            # None: SYSTEMS, none in quick mode (compile's first call alone
                                            # takes ~30 s on a CPU: a quick search leaves switches to the user)
    max_nfe: int | None = None
    max_memory: int | None = None           # peak tensor bytes of a 2-sample run (measured at screening)
    trained: bool = False                   # allow techniques that train (L2C routers, exit heads, pruning)
    quick: bool = False
    # schedule fitters (FIT_METHODS) the search runs for this model when the zoo ships no schedule of that
    # method for it: fitted on the reference sampler's own samples (no data needed), FIT_STEPS steps,
    # interpolated to each step count like a shipped fit, and stored in the candidates' specs as σ's
    fit: tuple = ()
    fitted: dict = field(default_factory=dict)      # fit name -> its σ's (filled by the search)
    pruned: list = field(default_factory=list)      # (label, reason) of what never ran

    def __post_init__(self):
        if self.systems is None:
            self.systems = () if self.quick else SYSTEMS
        if isinstance(self.fit, str):
            self.fit = (self.fit,)
        bad = [m for m in self.fit if m not in FIT_METHODS]
        if bad:
            raise ValueError(f"unknown schedule fitter(s) {bad} in Space(fit=); known: {', '.join(FIT_METHODS)}")
        self.fit = tuple(dict.fromkeys(self.fit))

    def solver_list(self) -> list[str]:
        if self.solvers is not None:
            for s in self.solvers:
                get_solver(s)
            return list(self.solvers)
        return list(QUICK_SOLVERS) if self.quick else fixed_grid_solvers()

    def nfe_list(self) -> list[int]:
        grid = self.nfe if self.nfe is not None else (QUICK_NFE if self.quick else NFE_GRID)
        return sorted(n for n in grid if self.max_nfe is None or n <= self.max_nfe)

    def schedule_list(self, model: str | None, process=None) -> list[str]:
        """The schedules tried: logsnr, karras (+ uniform), "trailing" for a discrete (DDPM-table)
        process, and the model's fitted AYS / DP schedules when the zoo ships them."""
        if self.schedules is not None:
            return list(self.schedules) + list(self.fitted)
        discrete = ["trailing"] if getattr(process, "discrete", False) else []
        return (["logsnr", "karras"] + ([] if self.quick else ["uniform"]) + discrete + fitted_schedules(model)
                + list(self.fitted))

    def schedule_spec(self, solver: str, steps: int, schedule: str, guidance: float = 1.0) -> Spec:
        """The spec of ``solver`` on ``steps`` steps of ``schedule``; a schedule fitted during the search is
        its σ's interpolated to ``steps`` (schedule ``"sigmas"``, labelled with the fit's name)."""
        if schedule in self.fitted:
            return Spec(solver, steps, guidance=guidance).on_sigmas(
                timesteps.interpolate(self.fitted[schedule], steps), schedule)
        return Spec(solver, steps, schedule, guidance)

    def techniques_for(self, den, objective: str) -> list[tuple[str, dict]]:
        """(name, config) singles that apply to ``den`` under ``objective``; pruned ones recorded."""
        out = []
        names = list(self.techniques) if self.techniques is not None else T.names()
        for name in names:
            tech = T.get(name)
            why = tech.why_not(den)
            if tech.family == "systems" and self.techniques is None:
                continue                       # systems switches: the systems pass on the winner
            if why is None and name in SKIP and self.techniques is None:
                why = "request-level cache (across requests), not one sampling run"
            if why is None and name in TRAINED and not self.trained:
                why = "trains a part (router, exit heads, fine-tune); pass trained=True to include"
            if why is None and name in SIMULATED and objective in ("time", "nfe", "macs"):
                why = (f"simulated quantization computes in fp32: it saves bytes, not {objective} "
                       "(use objective='bytes')")
            grid = self.techniques[name] if self.techniques is not None else technique_grid(tech)
            if why is None and not grid:
                why = "no parameter grid declared"
            if why is not None:
                self.pruned.append((name, why))
                continue
            out += [(name, dict(c)) for c in grid]
        return out


def base_specs(space: Space, den, model: str | None) -> list[Candidate]:
    """Every solver x NFE x schedule x guidance as a candidate (steps from NFE per solver)."""
    out, seen = [], set()
    scheds = space.schedule_list(model, getattr(den, "process", None))
    pins = {sc: pin for sc in scheds if (pin := fitted_for(sc)) is not None}
    for solver in space.solver_list():
        for sched in scheds:
            for nfe in space.nfe_list():
                steps = steps_for(solver, nfe)
                if steps is None or (steps < 2 and get_solver(solver).final == "step"):
                    continue
                if sched in pins and pins[sched] != (solver, steps):
                    continue          # an end-to-end fitted schedule: only its own solver at its own step count
                if steps == 1 and solver != "ddim":
                    continue          # one step to 0 is D(x, σ_max) for every "denoised" solver: ddim's duplicate
                for g in space.guidance:
                    spec = space.schedule_spec(solver, steps, sched, g)
                    real = nfe_of(solver, steps) * (2 if g != 1.0 else 1)
                    if spec.label() in seen:
                        continue
                    if space.max_nfe is not None and real > space.max_nfe:
                        space.pruned.append((spec.label(), f"NFE {real} > max_nfe {space.max_nfe}"))
                        continue
                    seen.add(spec.label())
                    out.append(Candidate(spec, real, ("solver",)))
    return out


def no_effect(name: str, cfg: dict, steps: int) -> str | None:
    """Why a technique config would change nothing at ``steps`` steps (None when it may act)."""
    interval = cfg.get("interval")
    if interval is not None and interval >= steps:
        return f"interval {interval} >= {steps} steps: nothing is reused"
    if steps < 2 and T.get(name).family in ("caching", "early-exit"):
        return "one step: there is no earlier step to reuse"
    return None


def compose(base: Candidate, entries: list[tuple[str, dict]], families: tuple) -> Candidate | str:
    """``base`` with ``entries`` appended, or the reason it cannot be."""
    for n, c in entries:
        why = no_effect(n, c, base.spec.steps)
        if why:
            return f"{n}: {why}"
    spec = base.spec.use(*entries)
    return Candidate(spec, base.nfe, tuple(dict.fromkeys(base.families + families)), parent=base.label)


def family_of(name: str) -> str:
    return T.get(name).family
