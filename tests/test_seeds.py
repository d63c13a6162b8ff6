"""The seed registry (effdiff.seeds): named ranges pairwise disjoint, the derivation of per-sample
seeds matching sampling.seeds_for, teacher pairs off the bench's noise, and an overlap that fails."""
import ast
from pathlib import Path

import pytest

import effdiff.seeds as S
from effdiff.sampling import NOISE_STREAM, seeds_for


def test_registered_ranges_are_pairwise_disjoint():
    import importlib
    for mod in ("effdiff.plan.runs", "effdiff.bench.interactions"):     # modules that register their own ranges
        try:
            m = importlib.import_module(mod)
            getattr(m, "_register_seeds", lambda: None)()
        except ImportError:
            pass
    S.check()
    names = set(S.REGISTRY)
    for must in ("bench", "selection", "fresh", "calibration", "knowledge-base", "teacher-pairs", "training",
                 "plan-screening", "plan-selection", "plan-certification", "learned-routers"):
        assert must in names


def test_planted_overlap_is_caught():
    with pytest.raises(S.SeedOverlap, match="bench"):
        S.check([S.BENCH, S.SeedRange("planted", 1, 2, "reflow pairs as before issue 24")])
    # an overlap only through the solver-noise stream (run seed s + 7919) is caught as well
    with pytest.raises(S.SeedOverlap):
        S.check([S.BENCH, S.SeedRange("planted-stream", NOISE_STREAM + 5, NOISE_STREAM + 6, "x", solver_noise=False)])
    with pytest.raises(S.SeedOverlap):
        S.register(S.SeedRange("planted-register", 50, 60, "inside the bench's range"))
    assert "planted-register" not in S.REGISTRY
    # another space never collides with noise ranges
    S.check([S.BENCH, S.SeedRange("trainer-0", 0, 3, "x", space="trainer")])


def test_derivation_matches_sampling():
    """The registry's per-sample generator seeds are exactly what sampling.seeds_for draws."""
    assert S.MULT == 1_000_003 and S.NOISE_STREAM == NOISE_STREAM
    r = S.get("bench")
    assert list(r.expand(1))[:360] == seeds_for(1, 360)
    assert seeds_for(1, 360)[0] == 1_000_003 and seeds_for(1, 360)[-1] == 1_000_362   # the numbers


def test_teacher_pairs_no_longer_draw_bench_noise():
    """Pairs of a student trained with seed 0..99 come from run seeds 30000+, whose per-sample seeds
    never meet any bench seed's (the old cfg.seed + 1 = run seed 1 was the bench's seed 1)."""
    bench = {g for s in range(S.BENCH.start, S.BENCH.stop) for g in (s, s + NOISE_STREAM)}
    for training_seed in range(100):
        p = S.pairs_seed(training_seed)
        assert p in S.TEACHER_PAIRS and p not in bench and p + NOISE_STREAM not in bench
        assert S.owner(p) == "teacher-pairs"
    assert S.owner(1) == "bench"            # where the pairs used to be
    assert S.owner(1 + NOISE_STREAM) == "bench"
    distill = Path(S.__file__).parent / "distill"
    assert "seed=pairs_seed(" in (distill / "pairs.py").read_text()      # reflow and DMD draw pairs through it
    for f in distill.glob("*.py"):
        assert "seed + 1" not in f.read_text(), f.name


def test_bench_scripts_seeds_are_registered():
    """The literal seeds the bench modules pass to randn sit in the range the registry names for them."""
    bench = Path(S.__file__).parent / "bench"
    expect = {"compress.py": "calibration", "caching.py": "calibration", "retrieval.py": None, "solvers.py": None}
    for f, name in expect.items():
        tree = ast.parse((bench / f).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "seed" and isinstance(node.value, ast.Constant):
                owner = S.owner(node.value.value)
                assert owner is not None, f"{f}: seed {node.value.value} is in no registered range"
                if name:
                    assert owner == name
    from effdiff.bench.solvers import FRESH_SEED_OFFSET
    assert S.owner(FRESH_SEED_OFFSET) == "fresh"


def test_seeds_is_a_base_module():
    tree = ast.parse(Path(S.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("effdiff"), "seeds.py imports nothing of effdiff"


def test_range_seeds_stay_inside():
    assert S.BENCH.seeds(10, offset=40) == list(range(40, 50))
    with pytest.raises(ValueError):
        S.FRESH.seeds(101)
    with pytest.raises(ValueError):
        S.SeedRange("bad", 5, 5, "empty")
    assert "| teacher-pairs | noise | 30000-30099 |" in S.table()


def test_docs_quote_the_registry():
    """docs/evaluation.md prints the registry as it is (regenerate: python -m effdiff.seeds --write docs/evaluation.md)."""
    doc = (Path(S.__file__).parents[2] / "docs" / "evaluation.md").read_text()
    for line in S.table().splitlines():
        if line.startswith("| ") and line.split(" | ")[0][2:] in S.BUILTIN:
            assert line in doc, line
