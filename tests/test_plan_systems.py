"""The planner's systems pass (issue 22): ``compile`` is tried on the winner by default, kept only
when its samples stay within the stated deviation and it is measured faster; its one-off compile
time is recorded; a plan holding it survives save / load / apply; and interleaved timing never runs
one spec with another spec's hooks or switches attached (reference, best single and plan are
compared fairly, at one thread count)."""
from dataclasses import dataclass

import pytest
import torch

from effdiff import techniques as T
from effdiff.hooks import ModelHook, attach, hooks_of
from effdiff.plan import Spec
from effdiff.plan import file as F, search as PS, space as S
from test_plan import Gaussian

TINY = PS.Settings(n_screen=16, n=32, rungs=(2,), select_seeds=3, fresh_seeds=3, max_bases=1, timing_repeats=2)
REF = Spec("heun", 10, "karras")


def _search(den, systems=S.SYSTEMS):
    return PS.Search(den, "10%", reference=REF, space=S.Space(solvers=["euler"], schedules=["karras"], systems=systems),
                     settings=TINY, progress=False)


class Count(ModelHook):
    calls = 0

    def __call__(self, module, call_next, *args, **kwargs):
        Count.calls += 1
        return call_next(*args, **kwargs)


def _hook_switch(name: str, hook):
    """Register a test-only systems switch that attaches ``hook()`` to the (Gaussian) denoiser; yields it, then
    unregisters it."""
    @dataclass(frozen=True)
    class Config:
        pass
    t = T.register(T.Technique(name, "systems", Config, lambda den, c: attach(name, [(den, hook())]),
                               lambda den: None if isinstance(den, Gaussian) else "test only"))
    yield t
    T._REGISTRY.pop(t.name, None)


@pytest.fixture
def count_technique():
    Count.calls = 0
    yield from _hook_switch("test-count", Count)


def test_compile_is_in_the_default_systems_pass_not_in_quick():
    assert "compile" in S.Space().systems
    assert S.Space(quick=True).systems == ()             # quick: no systems pass (compile's first call: ~30 s)
    assert S.Space(quick=True, systems=("compile",)).systems == ("compile",)
    assert "threads" not in S.Space().systems           # more threads is not the same machine budget
    assert PS.SYSTEMS_MAX_DEVIATION == 1e-3 and 0 < PS.SYSTEMS_MIN_GAIN < 1


def test_interleaved_timing_attaches_each_specs_techniques_around_its_own_runs_only(count_technique):
    den = Gaussian()
    s = _search(den)
    plain = Spec("euler", 4, "karras")
    nfe = S.nfe_of("euler", 4)
    t = s._interleaved([plain, plain.use("test-count"), plain], 8, PS.SEEDS["screening"], repeats=2)
    assert len(t) == 3 and all(len(x["ms_runs"]) == 2 for x in t)
    # the counted spec runs once to warm up and twice timed; the plain specs never see its hook
    assert Count.calls == 3 * nfe, Count.calls
    assert hooks_of(den) == {}


def test_systems_pass_records_compile_with_its_one_off_time_and_deviation():
    den = Gaussian()
    s = _search(den, systems=("compile",))
    rec = PS.Record("euler/karras/4", Spec("euler", 4, "karras"), 4, ("solver",))
    out, spec, cert = s.systems_pass(rec)
    assert len(out) == 1, out
    d = out[0]
    assert d["switch"] == "compile" and "error" not in d, d
    assert d["max_rel_deviation"] < PS.SYSTEMS_MAX_DEVIATION == d["max_rel_deviation_allowed"]
    assert d["first_call_s"] > 0 and d["one_off_s"] >= 0 and d["threads"] == torch.get_num_threads()
    faster = d["ms_with"] < (1 - PS.SYSTEMS_MIN_GAIN) * d["ms_without"]
    assert d["kept"] == faster
    assert ("compile" in spec.names) == d["kept"] and rec.spec.names == []     # the certified record is unchanged
    assert cert is None and "certified" not in d                    # same samples: nothing to certify again
    assert getattr(den, "_compiled_call_impl", None) is None          # nothing left compiled after the pass
    timing = s.time_side_by_side(PS.Record(spec.label(), spec, 4, ("solver",)), out)
    assert timing["threads"] == torch.get_num_threads()
    assert timing["one_off_s"] == (d["one_off_s"] if d["kept"] else 0.0)


def test_a_quick_plan_says_it_tried_no_systems_switches(tmp_path):
    den = Gaussian()
    kw = dict(spec=Spec("euler", 4, "karras"), reference=REF, budget=0.1, measure="test",
              weights_sha256=F.weights_sha256(den), certified={"text": "+0% [-1, +1]", "ci": [-0.01, 0.01]})
    quick = F.Plan.load(F.Plan(**kw, search={"systems_tried": []}).save(tmp_path / "q.json"))
    assert "no systems switches tried (quick search)" in quick.summary()
    for search in ({"systems_tried": list(S.SYSTEMS)}, {}):       # tried, or a plan file from before the field
        assert "no systems switches" not in F.Plan(**kw, search=search).summary()


def test_a_plan_with_compile_survives_save_load_and_apply(tmp_path):
    den = Gaussian()
    plain = Spec("euler", 4, "karras")
    spec = plain.use("compile")
    systems = [{"switch": "compile", "config": {}, "max_rel_deviation": 1e-7, "max_rel_deviation_allowed": 1e-3,
                "ms_without": 1.0, "ms_with": 0.5, "threads": 1, "first_call_s": 12.0, "one_off_s": 11.5, "kept": True}]
    p = F.Plan(spec=spec, reference=REF, budget=0.1, measure="test", weights_sha256=F.weights_sha256(den),
               certified={"text": "+0% [-1, +1]", "ci": [-0.01, 0.01]}, systems=systems)
    q = F.Plan.load(p.save(tmp_path / "plan.json"))
    assert q.spec == spec and q.spec.names == ["compile"] and "compile" in q.spec.label()
    assert "compile: one-off 12 s" in q.summary()
    z = plain.noise(den, 8, 3)
    a = plain.sample(den, z, seed=3)
    b = q.sample(den, z, seed=3)
    assert float((a - b).abs().max() / a.abs().max()) < PS.SYSTEMS_MAX_DEVIATION
    assert getattr(den, "_compiled_call_impl", None) is None          # removed after the call
    with q.apply(den) as h:
        assert den._compiled_call_impl is not None
        sig = q.spec.sigmas(den)
        c = h.sample(den, z * float(sig[0]), sig, "euler", seed=3)
    assert torch.allclose(b, c, rtol=0, atol=1e-6) and den._compiled_call_impl is None
    with pytest.raises(F.WeightsMismatch):
        q.apply(Gaussian(mu=0.3))


def test_a_search_that_keeps_compile_reports_it_beside_the_unchanged_best_single(monkeypatch, tmp_path):
    monkeypatch.setattr(PS, "SYSTEMS_MIN_GAIN", -1e9)   # keep whatever the speed (under load compile ran 4x slower)
    den = Gaussian()
    p = PS.plan(den, "10%", reference=REF, settings=TINY, progress=False,
                space=S.Space(solvers=["dpmpp-2m"], schedules=["karras"], nfe=(3, 4, 6, 8), systems=("compile",)))
    assert p.holds and p.spec.names == ["compile"], p.summary()
    single = p.search["best_single"]
    assert single and "compile" not in single                   # the best single configuration stays plain
    assert p.speed["plan"]["label"] == p.spec.label() and p.speed["best_single"]["label"] == single
    assert p.speed["best_single_with_plan_switches"]["label"] == single + " + compile"
    assert p.speed["threads"] == torch.get_num_threads() and p.speed["one_off_s"] == p.systems[0]["one_off_s"]
    q = F.Plan.load(p.save(tmp_path / "p.json"))
    assert q.spec == p.spec and q.systems == p.systems


def test_an_external_reference_that_caches_its_samples_is_timed_uncached():
    den = Gaussian()
    calls = {"cached": 0, "uncached": 0}

    def uncached(n, seed):
        calls["uncached"] += 1
        return torch.zeros(n, 1, 4, 4)

    def cached(n, seed):
        calls["cached"] += 1
        return torch.zeros(n, 1, 4, 4)
    cached.uncached = uncached
    s = _search(den)
    t = s._interleaved([PS.External(cached, "author"), Spec("euler", 4, "karras")], 4, PS.SEEDS["certification"], 2)
    assert calls == {"cached": 0, "uncached": 2} and len(t[0]["ms_runs"]) == 2


class Scale(ModelHook):
    """Scales the denoiser's output about the data mean: a stand-in for a switch that changes numerics."""
    k = 1.0

    def __call__(self, module, call_next, *args, **kwargs):
        out = call_next(*args, **kwargs)
        return module.mu + Scale.k * (out - module.mu)


@pytest.fixture
def scale_technique():
    yield from _hook_switch("test-scale", Scale)


@pytest.mark.parametrize("k, kept", [(1.01, True), (1.6, False)])
def test_a_switch_that_changes_the_samples_is_kept_only_when_certified_with_them(monkeypatch, scale_technique,
                                                                                  k, kept):
    """A faster switch whose samples deviate (bf16 autocast; compile on top of it) is certified on the
    winner's fresh seeds: kept when it holds the budget (the plan then carries that certificate), else
    dropped with its failing certificate recorded."""
    monkeypatch.setattr(PS, "SYSTEMS_MIN_GAIN", -1e9)        # "faster" whatever the load
    monkeypatch.setattr(Scale, "k", k)
    den = Gaussian()
    p = PS.plan(den, "10%", reference=REF, settings=TINY, progress=False,
                space=S.Space(solvers=["dpmpp-2m"], schedules=["karras"], nfe=(4, 6, 8), systems=("test-scale",)))
    assert len(p.systems) == 1, p.systems
    d = p.systems[0]
    assert d["max_rel_deviation"] > PS.SYSTEMS_MAX_DEVIATION        # it changes the samples ...
    assert d["kept"] is kept and d["certified"]["holds"] is kept    # ... so it was certified with them
    assert d["certified"]["seeds"] == p.seeds["certification"][: len(d["certified"]["seeds"])]
    assert ("test-scale" in p.spec.names) is kept and p.holds
    if kept:       # the plan's certificate is the one of the spec it ships
        assert p.certified["ci"] == d["certified"]["ci"] and p.certified["mean"] == d["certified"]["mean"]
    else:
        assert d["certified"]["ci"][1] > 0.10 and p.certified["ci"][1] <= 0.10


def test_autocast_is_tried_first_in_the_dtype_this_machine_computes_natively(monkeypatch):
    from effdiff.systems import native_low_precision
    assert S.SYSTEMS.index("autocast") < S.SYSTEMS.index("compile")     # compile then runs on what autocast left
    assert native_low_precision("cpu") in (None, "bfloat16")
    den = Gaussian()
    monkeypatch.setattr(PS, "native_low_precision", lambda device: None)
    s = _search(den, systems=("autocast",))
    out, spec, cert = s.systems_pass(PS.Record("euler/karras/4", Spec("euler", 4, "karras"), 4, ("solver",)))
    assert out == [{"switch": "autocast", "config": {}, "kept": False, "skipped": out[0]["skipped"]}]
    assert "no native bf16" in out[0]["skipped"] and spec.names == [] and cert is None
    monkeypatch.setattr(PS, "native_low_precision", lambda device: "bfloat16")
    out, spec, cert = s.systems_pass(PS.Record("euler/karras/4", Spec("euler", 4, "karras"), 4, ("solver",)))
    assert out[0]["config"] == {"dtype": "bfloat16"} and "max_rel_deviation" in out[0]
