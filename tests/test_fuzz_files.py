"""Fuzzing every file a user hands effdiff and every command line entry point (issue 25).

Formats: LoRA adapter, control model, pruned checkpoint, distilled student, teacher-pairs manifest,
schedule JSON, bench ``results.json`` (through ``effdiff report``). Mutations: random (truncation, bit
flips in the tensors or the JSON), structured with valid hashes (a metadata value of the wrong type,
out of range, huge, deeply nested; a tensor sliced, NaN, of another dtype, dropped), whole-file
replacements (not UTF-8, a 5000-digit number, 100000 nested brackets, a scalar) and dotted file names.
Entry points: ``effdiff sample`` (--lora, --control-model, --control, --schedule), ``effdiff report``,
``effdiff bench`` and ``python -m effdiff.distributed sample|bench`` (in process).

The contract: a command exits 0, or 2 with one ``effdiff CMD: error:`` line naming the file or the
flag, having written nothing; a library reader returns, or raises a clear effdiff error naming the
file. Seeded (``derandomize``); the file runs in well under a minute on 2 cores.
"""
import json
import shutil
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
pytest.importorskip("peft")
from hypothesis import event, example, given, settings, strategies as st  # noqa: E402
from test_fuzz import CLEAR, FUZZ, TORCH, snapshot  # noqa: E402

from effdiff import checkpoint, cli, zoo  # noqa: E402
from effdiff.distributed import cli as dcli  # noqa: E402

FEW = settings(FUZZ, max_examples=25)
SAMPLE = ["sample", "--model", "digits-unet", "--steps", "2", "--n", "2", "--quiet", "--out", "g.png"]
HUGE = "1" + "0" * 5000
RAW_JSON = {"not-utf8": b"\xff\xfe\x00{\x00}", "huge-int": ('{"a": %s}' % HUGE).encode(), "deep": b"[" * 100000,
            "scalar": b"3", "null": b"null", "empty": b"", "truncated": b'{"format": "effdiff-',
            "nan": b'{"a": NaN}', "bom-list": b"\xef\xbb\xbf[]"}
VALUES = [None, "x", "", -1, 0, 2 ** 70, 1e308, float("nan"), True, [], {}, [[[[1]]]], {"a": {"b": []}}, "a.b.c"]


# ------------------------------------------------------------------------------------------
# the files
# ------------------------------------------------------------------------------------------

def _png(path: Path):
    import numpy as np
    from PIL import Image
    img = np.zeros((16, 16), np.uint8)
    img[3:13, 6:10] = 255
    Image.fromarray(img).save(path)


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """One valid file of every format, made once (the zoo's where it ships one)."""
    from effdiff.distill import pairs as P
    from effdiff.prune.io import save_pruned
    from effdiff.timesteps import save_schedule
    root = tmp_path_factory.mktemp("originals")
    for name, src in (("lora", "digits-unet-lora-thick"), ("control", "digits-unet-controlnet-xs-edges"),
                      ("student", "digits-unet-pd-1step")):
        for ext in (".safetensors", ".json"):
            shutil.copyfile(zoo.WEIGHTS / f"{src}{ext}", root / f"{name}{ext}")
    save_pruned(zoo.load("digits-unet"), root / "pruned")
    P.generate(zoo.load("digits-unet"), root / "pairs", P.PairsConfig(n=4, shard_size=2, steps=2, solver="ddim",
                                                                     schedule="uniform"), progress=False)
    save_schedule(root / "sched.json", torch.tensor([10.0, 1.0, 0.1, 0.0]))
    (root / "bench").mkdir()
    (root / "bench" / "results.json").write_text(json.dumps(
        {"suite": "default", "n": 4, "seeds": [0, 1], "rows": [{"config": "euler-10", "fd": 1.5, "nfe": 10}]}))
    _png(root / "c.png")
    from effdiff.plan.spec import Spec
    (root / "spec.json").write_text(Spec("dpmpp-2m", 2).use("deepcache:interval=2").to_json())
    return root


def _flat(meta, prefix=()):
    """Every (path, value) of nested metadata dicts."""
    for k, v in meta.items():
        yield prefix + (k,), v
        if isinstance(v, dict):
            yield from _flat(v, prefix + (k,))


def _set(meta, path, value):
    for k in path[:-1]:
        meta = meta[k]
    meta[path[-1]] = value


@st.composite
def pair_mutation(draw):
    """How to damage a safetensors + JSON pair."""
    kind = draw(st.sampled_from(["truncate", "flip", "meta", "meta", "tensor", "raw-json", "dotted", "drop-json"]))
    return kind, draw(st.floats(0, 1)), draw(st.integers(0, 7)), draw(st.sampled_from(sorted(RAW_JSON))), \
        draw(st.integers(0, 10 ** 6)), draw(st.sampled_from(range(len(VALUES)))), \
        draw(st.sampled_from(["slice", "nan", "dtype", "drop", "scalar"]))


def damage(src: Path, dst: Path, mutation) -> Path:
    """``dst`` (a stem) holding ``src`` (a stem) damaged by ``mutation``; returns the stem to hand over."""
    kind, where, bit, raw, pick, value, how = mutation
    st_src, js_src = checkpoint.files(src)
    if kind == "dotted":
        dst = dst.with_name(dst.name + ".v2")
    st_dst, js_dst = checkpoint.files(dst)
    if kind in ("meta", "tensor"):                       # consistent files: valid hashes over wrong content
        tensors, meta = checkpoint.load(src)
        if kind == "meta":
            paths = [p for p, _ in _flat(meta)]
            _set(meta, paths[pick % len(paths)], VALUES[value])
            event(f"meta {paths[pick % len(paths)][-1]} = {str(VALUES[value])[:12]}")
        else:
            key = sorted(tensors)[pick % len(tensors)]
            t = tensors[key]
            tensors[key] = {"slice": t.reshape(-1)[: max(1, t.numel() // 2)], "nan": t * float("nan"),
                            "dtype": (t * 1000).to(torch.int8), "drop": None, "scalar": t.reshape(-1)[:1].reshape(())}[how]
            if tensors[key] is None:
                del tensors[key]
            event(f"tensor {how}")
        try:
            checkpoint.save(dst, tensors, meta)
        except (TypeError, ValueError):                  # NaN JSON etc.: not a file we could have been handed
            shutil.copyfile(st_src, st_dst)
            shutil.copyfile(js_src, js_dst)
        return dst
    shutil.copyfile(st_src, st_dst)
    shutil.copyfile(js_src, js_dst)
    target = st_dst if bit % 2 == 0 else js_dst
    data = bytearray(target.read_bytes())
    if kind == "truncate":
        target.write_bytes(bytes(data[: int(where * len(data))]))
    elif kind == "flip":
        i = min(int(where * len(data)), len(data) - 1)
        data[i] ^= 1 << bit
        target.write_bytes(bytes(data))
    elif kind == "raw-json":
        js_dst.write_bytes(RAW_JSON[raw])
    elif kind == "drop-json":
        js_dst.unlink()
    event(kind)
    return dst


# ------------------------------------------------------------------------------------------
# the contract
# ------------------------------------------------------------------------------------------

def check_command(main, prog: str, argv, root: Path, capsys, names=()) -> int:
    """``main(argv)`` run in ``root``: exit 0, or 2 with one error line naming one of ``names`` (files)
    or a flag, and nothing written."""
    before = snapshot(root)
    rc = main([str(a) for a in argv])                  # a traceback escaping here fails the test
    err = capsys.readouterr().err
    assert rc in (0, 2), (argv, rc, err)
    event(f"{prog} exit {rc}")
    if rc == 2:
        lines = err.strip().splitlines()
        assert lines and f"{prog}" in lines[-1] and ": error: " in lines[-1], err
        assert len(lines) == 1 or lines[0].startswith("usage:"), err
        assert any(n in lines[-1] for n in names) or "--" in lines[-1] or "argument" in lines[-1], err
        assert snapshot(root) == before, f"{argv} failed but changed files"
    return rc


def assert_names_file(exc: BaseException, name: str):
    """A deliberate effdiff error about the file ``name``: a documented type, raised outside torch, whose
    message names the file (then the library's own words after it may stay)."""
    import traceback
    frames = traceback.extract_tb(exc.__traceback__)
    inner = str(Path(frames[-1].filename).resolve()) if frames else ""
    assert isinstance(exc, CLEAR) and type(exc) is not RuntimeError, f"{type(exc).__name__}: {exc}"
    assert not inner.startswith(TORCH), f"raised inside torch ({inner}): {exc}"
    assert name in str(exc), f"{type(exc).__name__} does not name {name}: {exc}"


def check_reader(read, path: Path, name: str):
    """A library reader returns, or raises a clear effdiff error naming the file."""
    try:
        read(path)
    except Exception as e:  # noqa: BLE001 - the point: what is raised must be a clear error
        assert_names_file(e, name)
        event(f"refused: {type(e).__name__}")
        return False
    event("loaded")
    return True


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _fresh(root: Path) -> Path:
    d = root / "case"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    for p in root.iterdir():
        if p.is_file():
            p.unlink()
    return d


# ------------------------------------------------------------------------------------------
# checkpoint pairs through the command line: LoRA, control model
# ------------------------------------------------------------------------------------------

@FEW
@given(m=pair_mutation(), weight=st.sampled_from(["", ":0.5", ":nan", ":-inf", ":1e400", ":x", ":"]))
def test_fuzz_lora_file(m, weight, originals, workdir, capsys):
    stem = damage(originals / "lora", _fresh(workdir) / "thick", m)
    rc = check_command(cli.main, "effdiff sample", SAMPLE + ["--lora", f"{stem}{weight}"], workdir, capsys,
                       names=[stem.name, "--lora"])
    if weight not in ("", ":0.5"):
        assert rc == 2, (m, weight)
    elif m[0] == "dotted":
        assert rc == 0, m


@FEW
@given(m=pair_mutation(), image=st.sampled_from(["c.png", "missing.png", "text", "bomb"]))
@example(m=("meta", 0.0, 0, "bom-list", 1750, 0, "slice"), image="c.png")   # found by the fuzz: a config field None
@example(m=("meta", 0.0, 0, "bom-list", 1749, 5, "slice"), image="c.png")   # ... 2**70
@example(m=("meta", 0.0, 0, "bom-list", 1749, 3, "slice"), image="c.png")   # ... -1
@example(m=("meta", 0.0, 0, "bom-list", 875, 1, "slice"), image="c.png")    # card.method "x" picked the loader
@example(m=("meta", 0.0, 0, "bom-list", 270, 9, "slice"), image="c.png")    # format [] (unhashable)
def test_fuzz_control_model_file(m, image, originals, workdir, capsys):
    case = _fresh(workdir)
    stem = damage(originals / "control", case / "ctl", m)
    img = case / "c.png"
    shutil.copyfile(originals / "c.png", img)
    if image == "text":
        img.write_text("not an image")
    elif image == "bomb":
        from test_reliability_files import png_header
        img.write_bytes(png_header(30000, 30000))
    argv = SAMPLE + ["--control", img if image != "missing.png" else case / image, "--control-model", stem]
    rc = check_command(cli.main, "effdiff sample", argv, workdir, capsys, names=[stem.name, img.name, image])
    if image != "c.png":
        assert rc == 2


# ------------------------------------------------------------------------------------------
# checkpoint pairs through their library readers: pruned checkpoint, student, pairs
# ------------------------------------------------------------------------------------------

@FEW
@given(m=pair_mutation())
@example(m=("meta", 0.0, 0, "bom-list", 5386, 5, "slice"))     # found by the fuzz: a width of 2**70
def test_fuzz_pruned_file(m, originals, workdir):
    from effdiff.prune.io import load_pruned
    stem = damage(originals / "pruned", _fresh(workdir) / "model", m)
    check_reader(load_pruned, stem, stem.name)


@FEW
@given(m=pair_mutation())
@example(m=("meta", 0.0, 0, "bom-list", 260, 5, "slice"))      # found by the fuzz: beta_end 2**70
def test_fuzz_student_file(m, originals, workdir):
    from effdiff.distill import load
    stem = damage(originals / "student", _fresh(workdir) / "student", m)
    check_reader(load, stem, stem.name)


@FEW
@given(m=pair_mutation(), shard=st.sampled_from([0, 1]), manifest=st.sampled_from(
    [None, *sorted(RAW_JSON), "shards-0", "shards-str", "shards-huge", "format", "shards-3"]))
def test_fuzz_pairs_folder(m, shard, manifest, originals, workdir):
    from effdiff.distill import pairs as P
    case = _fresh(workdir) / "pairs"
    shutil.copytree(originals / "pairs", case)
    damage(originals / "pairs" / f"pairs-{shard:05d}", case / f"pairs-{shard:05d}", m)
    man = case / "manifest.json"
    info = json.loads(man.read_text())
    if manifest in RAW_JSON:
        man.write_bytes(RAW_JSON[manifest])
    elif manifest is not None:
        info.update({"shards-0": {"shards": 0}, "shards-str": {"shards": "2"}, "shards-huge": {"shards": 2 ** 70},
                     "format": {"format": "other"}, "shards-3": {"shards": 3}}[manifest])
        man.write_text(json.dumps(info))
    try:
        P.load(case)
    except Exception as e:  # noqa: BLE001
        assert_names_file(e, "pairs")
        event(f"pairs refused: {type(e).__name__}")


# ------------------------------------------------------------------------------------------
# JSON files through the command line: schedule, results.json
# ------------------------------------------------------------------------------------------

@st.composite
def json_mutation(draw):
    kind = draw(st.sampled_from(["raw", "value", "value", "truncate", "flip", "ok"]))
    return kind, draw(st.sampled_from(sorted(RAW_JSON))), draw(st.integers(0, 10 ** 6)), \
        draw(st.sampled_from(range(len(VALUES)))), draw(st.floats(0, 1)), draw(st.integers(0, 7))


def damage_json(src: Path, dst: Path, mutation) -> None:
    kind, raw, pick, value, where, bit = mutation
    data = src.read_bytes()
    if kind == "raw":
        data = RAW_JSON[raw]
    elif kind == "value":
        obj = json.loads(data)
        paths = [p for p, _ in _flat(obj)] if isinstance(obj, dict) else []
        if paths:
            _set(obj, paths[pick % len(paths)], VALUES[value])
        data = json.dumps(obj).encode()
    elif kind == "truncate":
        data = data[: int(where * len(data))]
    elif kind == "flip":
        b = bytearray(data)
        b[min(int(where * len(b)), len(b) - 1)] ^= 1 << bit
        data = bytes(b)
    event(f"json {kind}")
    dst.write_bytes(data)


@FEW
@given(m=json_mutation(), name=st.sampled_from(["sched.json", "sched.v2.json"]))
def test_fuzz_schedule_json(m, name, originals, workdir, capsys):
    path = _fresh(workdir) / name
    damage_json(originals / "sched.json", path, m)
    rc = check_command(cli.main, "effdiff sample", SAMPLE[:-2] + ["--schedule", path, "--out", "g.png"], workdir,
                       capsys, names=[name, "--schedule"])
    if m[0] == "ok":
        assert rc == 0


@FEW
@given(m=json_mutation(), md=st.sampled_from([None, b"# ok\n", b"\xff\xfe bad"]))
def test_fuzz_results_json_through_report(m, md, originals, workdir, capsys):
    case = _fresh(workdir) / "bench"
    case.mkdir()
    damage_json(originals / "bench" / "results.json", case / "results.json", m)
    if md is not None:
        (case / "notes.md").write_bytes(md)
    rc = check_command(cli.main, "effdiff report", ["report", case], workdir, capsys,
                       names=["results.json", "notes.md", "bench"])
    if m[0] == "ok" and md != b"\xff\xfe bad":
        assert rc == 0


# ------------------------------------------------------------------------------------------
# the other entry points' flags: effdiff bench, python -m effdiff.distributed
# ------------------------------------------------------------------------------------------

INTS = st.sampled_from(["0", "-1", "x", "", "99999999999", str(2 ** 70), "1e3", "2"])
BAD_OUT = st.sampled_from(["blocker/g.png", "g.xyz", ".", "blocker", "sub/"])


def _flag(flag, values):
    return st.one_of(st.just([]), values.map(lambda v: [flag, v]))


DIST_SAMPLE = st.tuples(
    _flag("--model", st.sampled_from(["digits-unet", "digits-classifier", "nope", ""])),
    _flag("--solver", st.sampled_from(["ddim", "euler", "nope"])),
    _flag("--schedule", st.sampled_from(["uniform", "karras", "nope", "missing.json"])),
    _flag("--steps", INTS), _flag("--samples", INTS), _flag("--seed", INTS),
    _flag("--guidance", st.sampled_from(["1", "nan", "inf", "1e308", "x"])),
    _flag("--out", BAD_OUT), _flag("--save-tensor", st.sampled_from(["x.safetensors", "blocker/x", ".", "g.png"])),
    _flag("--parallel", st.sampled_from(["none", "nope"])), _flag("--warmup", INTS), _flag("--patches", INTS),
).map(lambda parts: ["sample"] + [a for p in parts for a in p])
DIST_BENCH = st.tuples(
    st.sampled_from([["--models", ""], ["--models", ","], ["--models", "nope"], ["--models", "digits-classifier"],
                     ["--out", "blocker"], ["--samples", "0"], ["--repeats", "0"], ["--seed", "-1"]]),
    _flag("--samples", INTS), _flag("--repeats", INTS),
).map(lambda parts: ["bench", "--quick"] + [a for p in parts for a in p])
BENCH = st.tuples(
    st.sampled_from([["--models", ""], ["--models", " , "], ["--models", "nope,"], ["--out", "blocker/x"],
                     ["--n", "0"], ["--threads", "0"], ["--suite", ""]]),
    _flag("--seeds", INTS), _flag("--guidance", st.sampled_from(["nan", "2"])),
).map(lambda parts: ["bench", "--quick"] + [a for p in parts for a in p])


FIT = st.tuples(       # one invalid flag, and valid others that cannot override it
    st.sampled_from([["--out", "blocker/s.json"], ["--out", "."], ["--model", "nope"], ["--model", "digits-classifier"],
                     ["--model", ""], ["--steps", "0"], ["--steps", "x"], ["--samples", "0"], ["--seed", "-1"],
                     ["--method", "nope"]]),
    _flag("--method", st.sampled_from(["ays", "dp"])),
).map(lambda parts: ["schedules", "fit"] + [a for p in parts for a in p])


def _blocker(root: Path):
    _fresh(root)
    (root / "blocker").write_text("a file where a directory would be needed")


@settings(FUZZ, max_examples=40)
@given(argv=st.one_of(DIST_SAMPLE, DIST_BENCH))
@example(argv=["sample", "--warmup", "0"])          # found by the fuzz: the error did not name the flag
def test_fuzz_distributed_entry_point(argv, workdir, capsys, monkeypatch):
    import effdiff.bench
    monkeypatch.setattr(effdiff.bench, "run", lambda *a, **k: pytest.fail("bench ran with invalid arguments"))
    _blocker(workdir)
    if argv[0] == "sample":
        argv += [] if "--samples" in argv else ["--samples", "2"]
        argv += [] if "--steps" in argv else ["--steps", "2"]
    rc = check_command(dcli.main, "effdiff.distributed", argv, workdir, capsys,
                       names=["blocker", "g.xyz", "nope", "model", "solver", "schedule"])
    assert rc == 2 or argv[0] == "sample"


@settings(FUZZ, max_examples=20)
@given(argv=BENCH)
def test_fuzz_bench_flags(argv, workdir, capsys, monkeypatch):
    import effdiff.bench
    monkeypatch.setattr(effdiff.bench, "run", lambda *a, **k: pytest.fail("bench ran with invalid arguments"))
    _blocker(workdir)
    assert check_command(cli.main, "effdiff bench", argv, workdir, capsys, names=["blocker", "nope", "suite"]) == 2


@settings(FUZZ, max_examples=15)
@given(argv=FIT)
def test_fuzz_schedules_fit_flags(argv, workdir, capsys, monkeypatch):
    from effdiff import schedule_opt
    for fn in ("ays", "dp"):
        monkeypatch.setattr(schedule_opt, fn, lambda *a, **k: pytest.fail("fitted with invalid arguments"))
    _blocker(workdir)
    argv = argv + ([] if "--model" in argv else ["--model", "digits-unet"]) + ([] if "--out" in argv else ["--out", "s.json"])
    assert check_command(cli.main, "effdiff schedules", argv, workdir, capsys, names=["blocker", "nope", "model", "output"]) == 2


@FEW
@given(m=json_mutation(), use=st.sampled_from([[], ["deepcache:interval=2"], ["nope"], ["deepcache:interval=x"],
                                              ["deepcache:interval=0"], ["deepcache:nope=1"], [":"], ["int8:"]]))
def test_fuzz_plan_file_and_use_strings(m, use, originals, workdir, capsys):
    path = _fresh(workdir) / "spec.v2.json"
    damage_json(originals / "spec.json", path, m)
    argv = ["sample", "--model", "digits-unet", "--n", "2", "--quiet", "--out", "g.png", "--plan", path]  # --plan: its steps
    argv += [a for u in use for a in ("--use", u)]
    rc = check_command(cli.main, "effdiff sample", argv, workdir, capsys, names=[path.name, "--plan", "--use", "nope"])
    if m[0] == "ok" and use == []:
        assert rc == 0
