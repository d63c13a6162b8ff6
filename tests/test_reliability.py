"""Issue 9: never lose a run, verify every weight file, check outputs before compute, write
atomically, and turn bad input into one clear error line (exit 2) - one test per defect."""
import errno
import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

import effdiff as ed
from effdiff import checkpoint, cli
from effdiff.checkpoint import CheckpointError
from effdiff.io import atomic_write, check_writable, clean_stale
from effdiff.training import Trainer, preset, train

TINY = ["--steps", "20", "--batch-size", "16", "--quiet"]


def toy(**kw):
    return preset("toy2d", **{"steps": 40, "ckpt_every": 10, **kw})


def flip_bit(path, from_end: int = 1):
    """Flip one bit of the tensor data (the end of a safetensors file is tensor bytes)."""
    data = bytearray(path.read_bytes())
    data[-from_end] ^= 0x01
    path.write_bytes(bytes(data))


def run_cli(argv, capsys):
    rc = cli.main(argv)
    err = capsys.readouterr().err
    return rc, err


# ---- 1. `effdiff train` never destroys a run ------------------------------------------------

def test_train_refuses_a_run_dir_without_resume_or_overwrite(tmp_path, capsys):
    run = tmp_path / "R"
    assert run_cli(["train", "--preset", "toy2d", "--out", str(run)] + TINY, capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    rc, err = run_cli(["train", "--preset", "toy2d", "--out", str(run), "--steps", "10", "--quiet"], capsys)
    assert rc == 2 and "not empty" in err and "--resume" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    rc, _ = run_cli(["train", "--preset", "toy2d", "--out", str(run), "--overwrite", "--steps", "10",
                     "--batch-size", "16", "--quiet"], capsys)
    assert rc == 0 and json.loads((run / "checkpoint.json").read_text())["step"] == 10


@pytest.mark.parametrize("args", [["--steps", "0"], ["--steps", "-5"], ["--batch-size", "0"], ["--seed", str(2 ** 70)],
                                  ["--seed", "-1"], ["--resume", "--overwrite"]])
def test_train_rejects_nonsense_before_work(tmp_path, capsys, args):
    run = tmp_path / "R"
    rc, err = run_cli(["train", "--preset", "toy2d", "--out", str(run), "--quiet"] + args, capsys)
    assert rc == 2 and "error:" in err
    assert not run.exists()


@pytest.mark.parametrize("field,value", [("steps", 0), ("steps", -3), ("batch_size", 0), ("seed", 2 ** 70),
                                         ("ckpt_every", 0), ("lr", float("nan"))])
def test_trainer_validates_its_config(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        Trainer(toy(**{field: value}), tmp_path, progress=False)


# ---- 2. --resume: from the header when the JSON is gone; refuse a dir without a run ---------

def test_resume_recovers_from_the_header_when_the_json_is_gone(tmp_path):
    cfg = toy()
    Trainer(cfg, tmp_path / "a", progress=False).run(stop_after=20)
    (tmp_path / "a" / "checkpoint.json").unlink()
    resumed = Trainer(cfg, tmp_path / "a", progress=False).run(resume=True)
    assert resumed.step == 40
    whole = Trainer(cfg, tmp_path / "b", progress=False).run()
    for k, v in whole.ema.state_dict().items():
        assert torch.equal(v, resumed.ema.state_dict()[k]), k


def test_resume_refuses_a_dir_without_a_run(tmp_path, capsys):
    for where in (tmp_path / "typo", tmp_path):
        with pytest.raises(CheckpointError, match="nothing to resume"):
            Trainer(toy(), where, progress=False).run(resume=True)
    assert not (tmp_path / "typo").exists()
    rc, err = run_cli(["train", "--preset", "toy2d", "--resume", "--out", str(tmp_path / "typo"), "--quiet"], capsys)
    assert rc == 2 and "nothing to resume" in err


# ---- 5. integrity: SHA-256 of every weight file, config bound to the tensors ----------------

def test_every_file_effdiff_writes_records_a_sha256(tmp_path):
    stem = train(preset("toy2d", steps=10, ckpt_every=5), tmp_path, progress=False)
    for name in ("checkpoint", "model"):
        meta = json.loads((tmp_path / f"{name}.json").read_text())
        tensors = load_file(str(tmp_path / f"{name}.safetensors"))
        assert meta["sha256"]["tensors"] == checkpoint.tensors_sha256(tensors)
    checkpoint.load(stem, require_sha256=True)


@pytest.mark.parametrize("name", ed.zoo.names())
def test_zoo_files_carry_a_verified_sha256(name):
    card = ed.zoo.card(name)
    tensors = load_file(str(ed.zoo.WEIGHTS / f"{name}.safetensors"))
    assert card["sha256"]["tensors"] == checkpoint.tensors_sha256(tensors)
    assert card["sha256"]["config"] == checkpoint.config_sha256(card)


@pytest.fixture
def zoo_copy(tmp_path, monkeypatch):
    """The shipped zoo copied to a temp dir that ``ed.zoo`` reads from."""
    weights = tmp_path / "weights"
    shutil.copytree(ed.zoo.WEIGHTS, weights)
    monkeypatch.setattr(ed.zoo, "WEIGHTS", weights)
    return weights


@pytest.mark.parametrize("damage", ["bit", "zero-half"])
def test_damaged_zoo_tensors_are_refused(zoo_copy, damage, capsys):
    st = zoo_copy / "digits-unet.safetensors"
    if damage == "bit":
        flip_bit(st, from_end=5)
    else:
        data = bytearray(st.read_bytes())
        half = len(data) // 2
        data[half:half + 4096] = bytes(4096)
        st.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"digits-unet\.safetensors is corrupt.*SHA-256"):
        ed.zoo.load("digits-unet")
    rc, err = run_cli(["sample", "--n", "2", "--steps", "2", "--quiet", "--out", str(zoo_copy / "g.png")], capsys)
    assert rc == 2 and "digits-unet.safetensors is corrupt" in err and not (zoo_copy / "g.png").exists()


@pytest.mark.parametrize("edit", [("process", "schedule", "cosine"), ("prediction", None, "x0"),
                                  ("num_classes", None, 0), ("model", "num_classes", 5)])
def test_edited_zoo_config_is_refused(zoo_copy, edit):
    js = zoo_copy / "digits-unet.json"
    meta = json.loads(js.read_text())
    key, sub, value = edit
    if sub is None:
        meta[key] = value
    else:
        meta[key][sub] = value
    js.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="digits-unet.json was edited"):
        ed.zoo.load("digits-unet")
    # without its SHA-256 the file is not trusted by the zoo, and the tensors still check the config
    del meta["sha256"]
    js.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="no SHA-256"):
        ed.zoo.load("digits-unet")
    if key in ("num_classes", "model"):
        with pytest.raises(CheckpointError, match="num_classes|does not match"):
            ed.zoo.from_checkpoint(zoo_copy / "digits-unet")


def test_card_edits_are_allowed(zoo_copy):
    js = zoo_copy / "digits-unet.json"
    meta = json.loads(js.read_text())
    meta["card"]["metrics"]["note"] = "edited by hand"
    js.write_text(json.dumps(meta))
    assert ed.zoo.load("digits-unet").meta["card"]["metrics"]["note"] == "edited by hand"


def test_install_records_the_sha256(tmp_path, zoo_copy):
    stem = train(preset("toy2d", steps=5, ckpt_every=5), tmp_path / "run", progress=False)
    ed.zoo.install(stem, "toy-test", extra_metrics={"fd": 1.0})
    den = ed.zoo.load("toy-test")
    assert den.meta["card"]["metrics"]["fd"] == 1.0
    assert ed.zoo.card("toy-test")["sha256"]["tensors"] == checkpoint.tensors_sha256(
        load_file(str(zoo_copy / "toy-test.safetensors")))


def test_resume_refuses_a_corrupted_checkpoint_and_leaves_it_alone(tmp_path):
    cfg = toy()
    Trainer(cfg, tmp_path, progress=False).run(stop_after=20)
    st = tmp_path / "checkpoint.safetensors"
    flip_bit(st, from_end=40)
    damaged = st.read_bytes()
    with pytest.raises(CheckpointError, match="checkpoint.safetensors is corrupt"):
        Trainer(cfg, tmp_path, progress=False).run(resume=True)
    assert st.read_bytes() == damaged          # never trained on, never written back


def test_checkpoint_json_edit_is_refused(tmp_path):
    Trainer(toy(), tmp_path, progress=False).run(stop_after=10)
    js = tmp_path / "checkpoint.json"
    meta = json.loads(js.read_text())
    meta["step"] = 30
    js.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match the metadata written with"):
        Trainer(toy(), tmp_path, progress=False).run(resume=True)


# ---- 7. output locations checked before any compute ------------------------------------------

@pytest.fixture
def no_sampling(monkeypatch):
    calls = []
    monkeypatch.setattr(ed, "sample", lambda *a, **k: calls.append(1))
    import effdiff.bench
    monkeypatch.setattr(effdiff.bench, "run", lambda *a, **k: calls.append(1))
    return calls


@pytest.mark.parametrize("out", ["blocker/g.png", "g.xyz", "."])
def test_sample_checks_out_before_sampling(tmp_path, monkeypatch, capsys, no_sampling, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file")
    rc, err = run_cli(["sample", "--n", "2", "--steps", "2", "--quiet", "--out", out], capsys)
    assert rc == 2 and "error:" in err and no_sampling == []


@pytest.mark.parametrize("args", [["--out", "blocker"], ["--out", "blocker/sub"], ["--repeats", "-1"],
                                  ["--repeats", "0"], ["--threads", "0"], ["--n", "0"], ["--models", "nope"],
                                  ["--models", "digits-classifier"], ["--suite", "nope"], ["--seeds", "0"],
                                  ["--seeds", "x"]])
def test_bench_checks_arguments_before_work(tmp_path, monkeypatch, capsys, no_sampling, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file")
    rc, err = run_cli(["bench", "--quick"] + args, capsys)
    assert rc == 2 and "error:" in err and no_sampling == []


@pytest.mark.parametrize("args", [["--n", "0"], ["--n", "-1"], ["--steps", "0"], ["--steps", "100000000"],
                                  ["--seed", str(2 ** 70)], ["--guidance", "nan"], ["--guidance", "inf"],
                                  ["--guidance", "1e308"], ["--classes", "a"], ["--classes", "11"]])
def test_sample_rejects_nonsense_up_front(tmp_path, capsys, no_sampling, args):
    rc, err = run_cli(["sample", "--quiet", "--out", str(tmp_path / "g.png")] + args, capsys)
    assert rc == 2 and "error:" in err and no_sampling == []


def test_check_writable(tmp_path):
    (tmp_path / "f").write_text("x")
    assert check_writable(tmp_path / "new" / "deeper" / "g.png") == tmp_path / "new" / "deeper" / "g.png"
    assert not (tmp_path / "new").exists()          # validating creates nothing
    with pytest.raises(NotADirectoryError, match="under the file"):
        check_writable(tmp_path / "f" / "g.png")
    with pytest.raises(IsADirectoryError):
        check_writable(tmp_path)
    with pytest.raises(NotADirectoryError):
        check_writable(tmp_path / "f", directory=True)
    with pytest.raises(OSError):
        check_writable("/proc/effdiff-test/g.png")


# ---- 8. atomic writes, stray temporaries, umask ----------------------------------------------

def test_failed_png_write_keeps_the_old_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "g.png"
    out.write_bytes(b"old grid")
    from PIL import Image

    def disk_full(self, fp, *a, **k):
        fp.write(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Image.Image, "save", disk_full)
    rc, err = run_cli(["sample", "--n", "2", "--steps", "2", "--quiet", "--out", str(out)], capsys)
    assert rc == 2 and "No space left on device" in err
    assert out.read_bytes() == b"old grid"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png"]   # no temp file left


def test_failed_checkpoint_write_keeps_the_old_one(tmp_path, monkeypatch):
    checkpoint.save(tmp_path / "c", {"a": torch.ones(3)}, {"v": 1})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    import effdiff.checkpoint as ck

    def boom(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(ck, "st_bytes", boom)
    with pytest.raises(OSError):
        checkpoint.save(tmp_path / "c", {"a": torch.zeros(3)}, {"v": 2})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_stray_temporaries_are_cleaned_on_the_next_run(tmp_path, capsys):
    dead = tmp_path / ".g.png.999999999.abcdef.tmp"        # a writer that was killed (no such pid)
    legacy = tmp_path / ".g.png.k2j3h4.tmp"                 # an old-style mkstemp name
    live = tmp_path / f".g.png.{os.getpid()}.abcdef.tmp"    # a write in progress: kept
    for p in (dead, legacy, live):
        p.write_bytes(b"partial")
    assert run_cli(["sample", "--n", "2", "--steps", "2", "--quiet", "--out", str(tmp_path / "g.png")], capsys)[0] == 0
    assert not dead.exists() and not legacy.exists() and live.exists()
    run = tmp_path / "run"
    run.mkdir()
    (run / ".checkpoint.safetensors.999999999.abc.tmp").write_bytes(b"partial")
    Trainer(toy(steps=10), run, progress=False).run()          # an empty dir but for the stray temp
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.json", "checkpoint.safetensors"]
    assert clean_stale(tmp_path / "missing") == []


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        checkpoint.save(tmp_path / "c", {"a": torch.ones(2)}, {})
        atomic_write(tmp_path / "t.txt", "text")
        from effdiff.viz import save_grid
        save_grid(torch.zeros(2, 1, 4, 4), tmp_path / "g.png")
    finally:
        os.umask(old)
    for p in tmp_path.iterdir():
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p.name


# ---- 9. one error line and exit 2 for every effdiff error; bugs keep their traceback ---------

def test_classifier_is_not_sampled(tmp_path, capsys):
    rc, err = run_cli(["sample", "--model", "digits-classifier", "--out", str(tmp_path / "g.png")], capsys)
    assert rc == 2 and "not a diffusion model" in err


def test_effdiff_errors_are_one_line_exit_2(tmp_path, monkeypatch, capsys):
    def nan_denoiser(den, scale):
        return lambda x, sigma, cond=None: x * float("nan")
    monkeypatch.setattr(ed, "guided", nan_denoiser)
    rc, err = run_cli(["sample", "--n", "2", "--steps", "2", "--quiet", "--out", str(tmp_path / "g.png")], capsys)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("effdiff sample: error: the denoiser returned NaN")


def test_bugs_and_torch_errors_keep_their_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(ed, "guided", lambda den, scale: lambda x, sigma, cond=None: torch.stack([]))
    with pytest.raises(RuntimeError, match="non-empty"):     # raised inside torch, not by an effdiff check
        cli.main(["sample", "--n", "2", "--steps", "2", "--quiet", "--out", str(tmp_path / "g.png")])
    monkeypatch.setattr(ed, "guided", lambda den, scale: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(["sample", "--n", "2", "--steps", "2", "--quiet", "--out", str(tmp_path / "g.png")])


# ---- 10. minor ------------------------------------------------------------------------------

def test_unet_rejects_a_size_it_was_not_built_for():
    den = ed.zoo.load("digits-unet")
    with pytest.raises(ValueError, match="built for 8x8"):
        den.net(torch.zeros(2, 1, 16, 16), torch.zeros(2), torch.zeros(2, dtype=torch.long))


def test_sample_rejects_an_empty_batch():
    den = ed.zoo.load("digits-unet")
    sig = ed.timesteps.logsnr_uniform(2, den.process)
    with pytest.raises(ValueError, match="batch"):
        ed.sample(den, torch.zeros(0, 1, 8, 8), sig)
