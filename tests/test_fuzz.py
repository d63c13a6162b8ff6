"""Fuzzing the command line and ``ed.sample``: every input ends in a correct result or a clear
error (an effdiff check, never an exception from inside torch), and a failed command changes no file.

Seeded (``derandomize``) so that a failure reproduces; tiny n and steps so the file runs in well
under a minute on 2 cores.
"""
import hashlib
import os
import traceback
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings, strategies as st  # noqa: E402

import effdiff as ed  # noqa: E402
from effdiff import cli  # noqa: E402
from effdiff.checkpoint import CheckpointError  # noqa: E402

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CLEAR = (ValueError, KeyError, TypeError, OSError, CheckpointError, FloatingPointError)
TORCH = str(Path(torch.__file__).resolve().parent)
UNHELPFUL = ("math domain error", "index out of range", "division by zero", "not subscriptable", "NoneType")


def assert_clear(exc: BaseException):
    """A deliberate effdiff error: a documented type (a bare RuntimeError is torch's), raised
    outside torch's own Python code, with a message."""
    frames = traceback.extract_tb(exc.__traceback__)
    inner = frames[-1].filename if frames else ""
    assert isinstance(exc, CLEAR) and type(exc) is not RuntimeError, f"{type(exc).__name__}: {exc}"
    assert not str(Path(inner).resolve()).startswith(TORCH), f"raised inside torch ({inner}): {exc}"
    assert str(exc).strip() and not any(u in str(exc) for u in UNHELPFUL), f"{type(exc).__name__}: {exc}"


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------

INTS = st.one_of(st.integers(-3, 4), st.sampled_from(["0", "-1", "1e3", "x", "", "2", "99999999999", str(2 ** 70)]))
FLOATS = st.sampled_from(["1", "0", "2.5", "-1", "nan", "inf", "-inf", "1e308", "x", "1e3"])
OUTS = st.sampled_from(["g.png", "sub/g.png", "old.png", "blocker/g.png", "g.xyz", "g", ".", "sub/"])


def _opt(flag, values):
    return st.one_of(st.just([]), values.map(lambda v: [flag, str(v)]))


SAMPLE_ARGS = st.tuples(
    _opt("--model", st.sampled_from(["digits-unet", "digits-dit", "digits-classifier", "nope"])),
    _opt("--solver", st.sampled_from(["euler", "dpmpp-2m", "heun", "ddpm", "nope"])),
    _opt("--schedule", st.sampled_from(["karras", "logsnr", "uniform", "bogus"])),
    _opt("--steps", INTS), _opt("--n", INTS), _opt("--seed", INTS), _opt("--guidance", FLOATS),
    _opt("--classes", st.sampled_from(["3,7", "0", "10", "11", "-1", "a", "1,,2"])),
    OUTS.map(lambda o: ["--out", o]),
).map(lambda parts: ["sample", "--quiet"] + [a for p in parts for a in p])

OTHER_ARGS = st.one_of(
    st.tuples(_opt("--steps", INTS), _opt("--batch-size", INTS), _opt("--seed", INTS),
              st.sampled_from([[], ["--resume"], ["--overwrite"], ["--resume", "--overwrite"]]),
              st.sampled_from([["--out", "run"], ["--out", "blocker/run"], ["--out", "old.png"], ["--out", "empty"]]),
              st.sampled_from([["--preset", "toy2d"], ["--preset", "nope"]]))
    .map(lambda parts: ["train", "--quiet"] + [a for p in parts for a in p]),
    # bench only with at least one invalid argument: a real bench run is minutes, not fuzz material
    st.tuples(st.sampled_from([["--repeats", "0"], ["--threads", "-1"], ["--n", "0"], ["--out", "old.png"],
                               ["--models", "digits-classifier"], ["--models", "nope"], ["--suite", "nope"],
                               ["--guidance", "nan"], ["--seed", "-2"]]),
              _opt("--n", INTS), _opt("--repeats", INTS))
    .map(lambda parts: ["bench", "--quick"] + [a for p in parts for a in p]),
)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _setup(root: Path):
    for p in root.iterdir():
        if p.is_dir():
            import shutil
            shutil.rmtree(p)
        else:
            p.unlink()
    (root / "old.png").write_bytes(b"an existing file that a failed command must not touch")
    (root / "blocker").write_text("a file where a directory would be needed")
    (root / "empty").mkdir()


def _check_main(argv, root: Path, capsys, monkeypatch):
    _setup(root)
    before = snapshot(root)
    seen = []
    real = cli.user_error

    def recording(exc):
        seen.append(exc)
        return real(exc)
    monkeypatch.setattr(cli, "user_error", recording)
    rc = cli.main(argv)                     # anything escaping here is a traceback: the test fails
    err = capsys.readouterr().err
    assert rc in (0, 2), (argv, rc)
    event(f"{argv[0]} exit {rc}")
    if rc == 2:
        assert err.strip().splitlines()[-1].startswith(f"effdiff {argv[0]}: error: "), (argv, err)
        for exc in seen:
            assert_clear(exc)
        assert snapshot(root) == before, f"{argv} failed but changed files"
    return rc


@FUZZ
@given(argv=SAMPLE_ARGS)
def test_fuzz_cli_sample(argv, workdir, capsys, monkeypatch):
    n = next((argv[i + 1] for i, a in enumerate(argv) if a == "--n"), None)
    steps = next((argv[i + 1] for i, a in enumerate(argv) if a == "--steps"), None)
    if n is None:
        argv += ["--n", "2"]                 # keep it tiny: defaults are 100 samples
    if steps is None:
        argv += ["--steps", "2"]
    if _check_main(argv, workdir, capsys, monkeypatch) == 0:
        out = workdir / argv[argv.index("--out") + 1]
        from PIL import Image
        assert Image.open(out).size[0] > 8


@FUZZ
@given(argv=OTHER_ARGS)
def test_fuzz_cli_train_and_bench(argv, workdir, capsys, monkeypatch):
    if argv[0] == "train" and "--steps" not in argv:
        argv += ["--steps", "3"]             # the preset's 2000 steps are not fuzz material
    if argv[0] == "train" and "--batch-size" not in argv:
        argv += ["--batch-size", "8"]
    if _check_main(argv, workdir, capsys, monkeypatch) == 0:
        assert argv[0] == "train"
        run = workdir / argv[argv.index("--out") + 1]
        from effdiff import checkpoint
        checkpoint.load(run / "model", require_sha256=True)


# ------------------------------------------------------------------------------------------
# ed.sample
# ------------------------------------------------------------------------------------------

S2 = 1.0   # data ~ N(0, S2): the exact denoiser is known in closed form


def gaussian(x, sigma, cond=None):
    return x * S2 / (S2 + sigma.view(-1, *[1] * (x.ndim - 1)) ** 2)


def _sigmas(kind: str, n: int):
    good = ed.timesteps.karras(n, sigma_min=0.02, sigma_max=20.0)
    return {"good": good, "list": good.tolist(), "no-zero": good[:-1], "nan": torch.cat([good[:1] * float("nan"), good[1:]]),
            "increasing": good.flip(0), "negative": -good, "2d": good[None], "short": good[-1:],
            "float32": good.float(), "ints": torch.arange(n, -1, -1)}[kind]


def _x(kind: str, batch: int):
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 1, 4, 4, generator=g) * 20.0
    return {"float32": x, "float64": x.double(), "int": x.long(), "nan": x * float("nan"), "list": x.tolist()}[kind]


VALID = {"solver": st.sampled_from(ed.solvers.names()),
         "sigmas": st.sampled_from(["good", "list", "float32", "ints"]),
         "x": st.sampled_from(["float32", "float64"]),
         "batch": st.integers(1, 3),
         "seed": st.one_of(st.none(), st.integers(0, 2 ** 63 - 1)),
         "start": st.sampled_from([0, 0, 1])}
INVALID = {"solver": st.sampled_from(["nope", "EULER", ""]),
           "sigmas": st.sampled_from(["no-zero", "nan", "increasing", "negative", "2d", "short"]),
           "x": st.sampled_from(["int", "nan", "list"]),   # x of shape [B] alone: test_loop_solver_edge_cases
           "batch": st.just(0),
           "seed": st.sampled_from([-1, -2, 2 ** 64, 2 ** 70, 1.5, "0", True]),
           "start": st.sampled_from([-2, -1, 6, 7, 1.5, True])}


@st.composite
def sample_kw(draw):
    """At most one invalid argument per call (half the calls all valid), so both outcomes are exercised."""
    bad = draw(st.sampled_from([None] * len(INVALID) + sorted(INVALID)))
    kw = {k: draw(INVALID[k] if k == bad else VALID[k]) for k in VALID}
    kw["steps"] = draw(st.integers(2, 4))    # > start: an empty segment is test_loop_solver_edge_cases
    kw["bad"] = bad
    return kw


@settings(FUZZ, max_examples=150)
@given(kw=sample_kw())
def test_fuzz_sample(kw):
    sig, x = _sigmas(kw["sigmas"], kw["steps"]), _x(kw["x"], kw["batch"])
    try:
        out = ed.sample(gaussian, x, sig, kw["solver"], seed=kw["seed"], start=kw["start"])
    except Exception as e:  # noqa: BLE001 - the point: whatever is raised must be a clear error
        assert_clear(e)
        event(f"sample: {type(e).__name__}")
        return
    event("sample: ok")
    assert kw["bad"] is None, f"invalid {kw['bad']} accepted: {kw}"
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()


LOOP_SOLVERS = ["paradigms", "parataa", "dpm-solver-12", "dpm-solver-23", "adaptive-sde"]


@pytest.mark.parametrize("solver", LOOP_SOLVERS)
@pytest.mark.parametrize("case", ["empty-segment", "batch-only-x"])
def test_loop_solver_edge_cases(case, solver):
    sig = ed.timesteps.karras(2, sigma_min=0.02, sigma_max=20.0)
    x, start = (torch.randn(2, 1, 4, 4), 2) if case == "empty-segment" else (torch.randn(5) * 20.0, 0)
    try:
        out = ed.sample(gaussian, x, sig, solver, seed=1, start=start)
    except Exception as e:  # noqa: BLE001
        assert case == "batch-only-x", f"{type(e).__name__}: {e}"
        assert_clear(e)
        return
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert case != "empty-segment" or torch.equal(out, x)
