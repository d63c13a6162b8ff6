"""The one sampling driver (issue: architecture): segments with true step indices, every solver
callable on its own, the driver's checks, and composites (restart, retrieval, NIRVANA) seen
through a spy that records the loop context's step on every evaluation."""
import ast
import pathlib

import pytest
import torch

import effdiff as ed
from effdiff import timesteps as T
from effdiff.context import current_context

MU, S2 = 0.3, 0.25
SRC = pathlib.Path(ed.__file__).parent


def gauss(x, sigma, cond=None):
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return MU + S2 / (S2 + s ** 2) * (x - MU)


class Spy:
    """A denoiser that records (step, stage) of every call from the loop context."""

    def __init__(self, den=gauss):
        self.den, self.seen = den, []

    def __call__(self, x, sigma, cond=None):
        ctx = current_context()
        self.seen.append((ctx.step, ctx.stage))
        return self.den(x, sigma, cond)

    def steps(self):
        return [s for s, _ in self.seen]


def x_T(b=4, d=3, sigma=10.0, seed=0):
    return sigma * torch.randn(b, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


SIG = T.karras(8, 0.05, 10.0)


# ---- every solver on its own -----------------------------------------------------------------

@pytest.mark.parametrize("name", ed.solvers.names())
def test_every_solver_runs_directly_with_defaults(name):
    out = ed.solvers.get(name)(gauss, x_T(), SIG)
    assert out.shape == x_T().shape and torch.isfinite(out).all()
    assert (out - MU).abs().max() < 5             # left the σ=10 noise (|x_T| up to ~25) for the data


def test_unknown_option_names_the_solver_and_its_options():
    with pytest.raises(TypeError, match="'ddim' has no option 'etta'.*eta"):
        ed.sample(gauss, x_T(), SIG, solver="ddim", etta=1.0)


# ---- segments ----------------------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["euler", "heun", "ddim", "dpmpp-2m", "dpmpp-3m", "unipc", "lms", "sa-solver"])
def test_segments_compose_with_true_indices(solver):
    """Segments of one session compose exactly (a multistep solver keeps its history when the next
    segment continues the very state the last one returned); hooks see the true indices."""
    full = ed.sample(gauss, x_T(), SIG, solver=solver, seed=3)
    spy = Spy()
    with ed.sampling.Session(spy, SIG, seed=3) as s:
        mid = s.run(x_T(), solver, stop=3)
        out = s.run(mid, solver, start=3)
    assert sorted(set(spy.steps())) == list(range(8)) and spy.steps() == sorted(spy.steps())
    assert s.steps == 8
    torch.testing.assert_close(out, full, rtol=0, atol=0)


def test_an_edited_state_restarts_multistep_history():
    full = ed.sample(gauss, x_T(), SIG, solver="dpmpp-3m")
    with ed.sampling.Session(gauss, SIG) as s:
        mid = s.run(x_T(), "dpmpp-3m", stop=3)
        out = s.run(mid.clone(), "dpmpp-3m", start=3)     # not the same state: first-order restart
    assert 0 < (out - full).abs().max() < 0.2


def test_start_runs_the_tail_with_true_steps():
    spy = Spy()
    res = ed.sample(spy, x_T(), SIG, solver="heun", start=5, return_info=True)
    assert sorted(set(spy.steps())) == [5, 6, 7] and res.steps == 3 and res.nfe == 2 + 2 + 1
    ref = ed.sample(gauss, x_T(), SIG[5:], solver="heun")
    torch.testing.assert_close(res.x, ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match="start"):
        ed.sample(gauss, x_T(), SIG, start=9)


# ---- composites: the spy sees the true step indices ----------------------------------------------

def test_restart_spy_sees_outer_steps():
    spy = Spy()
    ed.sample(spy, x_T(), SIG, solver="restart", inner="heun", restarts=[(0.5, 3.0, 2, 3)], seed=0)
    steps = spy.steps()
    assert sorted(set(steps)) == list(range(8)) and steps == sorted(steps)
    j = int((torch.log(SIG[1:-1]) - torch.log(torch.tensor(0.5))).abs().argmin()) + 1   # σ_min's step
    # restart evaluations happen inside the outer step landing on σ_min (stage keeps counting)
    assert steps.count(j - 1) == 2 + 2 * 2 * 3


def test_redi_spy_sees_true_steps():
    from effdiff.retrieval import KnowledgeBase, redi_sample
    sig = T.karras(12, 0.05, 10.0)
    kb = KnowledgeBase.build(gauss, 32, sig, 3, 8, shape=(3,), solver="ddim")
    spy = Spy()
    r = redi_sample(spy, kb, x_T(), seed=0)
    assert sorted(set(spy.steps())) == [0, 1, 2, 8, 9, 10, 11] and r.nfe == 7


def test_nirvana_spy_sees_true_steps():
    from effdiff.caching import ApproximateCache, cached_sample
    cache = ApproximateCache(1 << 20, k_choices=(2, 4))
    lab = torch.zeros(4, dtype=torch.long)
    cached_sample(Spy(), cache, x_T(), SIG, lab, solver="euler", seed=0)      # miss: fills the cache
    spy = Spy()
    r = cached_sample(spy, cache, x_T(), SIG, lab, solver="euler", seed=0)    # hit: resumes at step k
    k = r.info["k"]
    assert r.info["hit"] and k == 4
    assert sorted(set(spy.steps())) == list(range(k, 8))


# ---- the driver's checks ----------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["euler", "ddpm", "dpmpp-2m"])
def test_wrong_output_shape_is_named_with_its_step(solver):
    def bad(x, sigma, cond=None):
        return gauss(x, sigma)[:1]
    with pytest.raises(ValueError, match=r"shape \(1, 3\) for input \(4, 3\) at step 0"):
        ed.sample(bad, x_T(), SIG, solver=solver, seed=0)


def test_wrong_output_dtype_and_type():
    with pytest.raises(TypeError, match="dtype torch.int64"):
        ed.sample(lambda x, s, c=None: x.long(), x_T(), SIG)
    with pytest.raises(TypeError, match="not a tensor"):
        ed.sample(lambda x, s, c=None: x.numpy(), x_T(), SIG)


def test_bad_batch_seed_and_cond():
    with pytest.raises(ValueError, match="non-empty batch"):
        ed.sample(gauss, torch.zeros(0, 3, dtype=torch.float64), SIG)
    with pytest.raises(ValueError, match="seed must be in"):
        ed.sample(gauss, x_T(), SIG, solver="ddpm", seed=-1)
    with pytest.raises(ValueError, match="cond has batch 3"):
        ed.sample(gauss, x_T(), SIG, cond=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*63\)"):
        ed.sample(gauss, x_T(), SIG, solver="ddpm", seed=2 ** 63)
    assert torch.isfinite(ed.sample(gauss, x_T(), SIG, solver="ddpm", seed=2 ** 63 - 1)).all()


# ---- architecture: the core has no import circle; nothing imports sampling's private names ------

CORE = ["context", "process", "denoisers", "timesteps", "sampling", "solvers"]


def _imports(path: pathlib.Path) -> set[str]:
    """effdiff modules that ``path`` imports anywhere, lazy imports inside functions included
    (relative imports resolved)."""
    pkg = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
    if path.name == "__init__.py":
        pkg = pkg.rsplit(".", 1)[0] + "." + "__init__"
    base = pkg.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            mod = base[:len(base) - node.level + 1] + (node.module.split(".") if node.module else [])
            names = [".".join(mod)] if node.module else [".".join(mod + [a.name]) for a in node.names]
            out.update(names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("effdiff"):
            out.add(node.module)
    return out


def _core_of(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in CORE else None


def test_core_import_graph_has_no_cycle():
    graph = {c: set() for c in CORE}
    for f in SRC.rglob("*.py"):
        me = _core_of(".".join(f.relative_to(SRC.parent).with_suffix("").parts))
        if me is None:
            continue
        for m in _imports(f):
            other = _core_of(m)
            if other is not None and other != me:
                graph[me].add(other)
    assert "sampling" not in graph["context"] and not graph["context"]      # the ground floor imports nothing

    def cycle_from(node, stack):
        if node in stack:
            return stack[stack.index(node):] + [node]
        for nxt in graph[node]:
            c = cycle_from(nxt, stack + [node])
            if c:
                return c
        return None
    for c in CORE:
        assert cycle_from(c, []) is None, f"import cycle: {' -> '.join(cycle_from(c, []))}"


def test_nothing_imports_private_sampling_names():
    offenders = []
    for f in SRC.rglob("*.py"):
        if f.name == "sampling.py":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("sampling"):
                offenders += [f"{f.name}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert not offenders
