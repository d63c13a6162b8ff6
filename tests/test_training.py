"""Training: exact resume (in-process and after a real SIGKILL), safetensors + JSON checkpoints,
clear errors for corrupt or mismatched checkpoints."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from effdiff import checkpoint
from effdiff.checkpoint import CheckpointError
from effdiff.training import preset, Trainer, train

SRC = str(Path(__file__).resolve().parents[1] / "src")


def small():
    return preset("toy2d", steps=40, ckpt_every=10)


def assert_same_weights(a: Trainer, b: Trainer):
    for name in ("net", "ema"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k} differs"


def test_resume_is_bit_identical(tmp_path):
    cfg = small()
    first = Trainer(cfg, tmp_path / "a", progress=False).run(stop_after=20)
    assert first.step == 20
    meta = json.loads((tmp_path / "a" / "checkpoint.json").read_text())
    assert meta["step"] == 20 and meta["config"] == cfg.to_json()
    resumed = Trainer(cfg, tmp_path / "a", progress=False).run(resume=True)
    assert resumed.step == 40
    whole = Trainer(cfg, tmp_path / "b", progress=False).run()
    assert_same_weights(resumed, whole)
    # without resume=True a new trainer starts from step 0, and refuses to run over the old run
    fresh = Trainer(cfg, tmp_path / "a", progress=False)
    assert fresh.step == 0
    with pytest.raises(FileExistsError, match="--resume.*--overwrite"):
        fresh.run()


def test_checkpoint_files_are_safetensors_and_json(tmp_path):
    Trainer(small(), tmp_path, progress=False).run(stop_after=10)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint.json", "checkpoint.safetensors"]  # no temp files left behind
    from safetensors.torch import load_file
    t = load_file(str(tmp_path / "checkpoint.safetensors"))
    assert any(k.startswith("net.") for k in t) and any(k.startswith("ema.") for k in t)
    assert "rng.gen" in t and any(k.startswith("opt.") for k in t)
    meta = json.loads((tmp_path / "checkpoint.json").read_text())
    assert meta["format"] == "effdiff-train-1" and meta["step"] == 10


def test_train_exports_model(tmp_path):
    stem = train(preset("toy2d", steps=10, ckpt_every=5), tmp_path, progress=False)
    t, meta = checkpoint.load(stem)
    assert meta["format"] == "effdiff-model-1" and meta["card"]["steps"] == 10
    assert meta["process"] == preset("toy2d").process and meta["prediction"] == "eps"
    tr = Trainer(preset("toy2d", steps=10, ckpt_every=5), tmp_path / "x", progress=False)
    checkpoint.load_state(tr.ema, t)


def test_corrupt_checkpoint_raises_with_path(tmp_path):
    cfg = small()
    Trainer(cfg, tmp_path, progress=False).run(stop_after=10)
    st = tmp_path / "checkpoint.safetensors"
    st.write_bytes(b"\x07garbage, not a safetensors file" * 3)
    with pytest.raises(CheckpointError, match=str(st).replace("\\", "\\\\")):
        Trainer(cfg, tmp_path, progress=False).run(resume=True)


def test_corrupt_json_and_missing_tensors(tmp_path):
    cfg = small()
    Trainer(cfg, tmp_path, progress=False).run(stop_after=10)
    js = tmp_path / "checkpoint.json"
    js.write_text("{not json")
    with pytest.raises(CheckpointError, match="checkpoint.json"):
        Trainer(cfg, tmp_path, progress=False).run(resume=True)
    Trainer(cfg, tmp_path / "b", progress=False).run(stop_after=10)
    (tmp_path / "b" / "checkpoint.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        Trainer(cfg, tmp_path / "b", progress=False).run(resume=True)


def test_mismatched_config_raises(tmp_path):
    Trainer(small(), tmp_path, progress=False).run(stop_after=10)
    with pytest.raises(CheckpointError, match="different config"):
        Trainer(preset("toy2d", steps=40, ckpt_every=10, lr=1e-3), tmp_path, progress=False).run(resume=True)


def test_load_state_names_the_bad_key():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    good = {f"m.{k}": v.clone() for k, v in net.state_dict().items()}
    checkpoint.load_state(net, good, "m.")
    bad = dict(good)
    bad["m.1.weight"] = torch.zeros(2, 5)
    with pytest.raises(CheckpointError, match=r"1\.weight.*\(2, 5\) vs \(2, 4\)"):
        checkpoint.load_state(net, bad, "m.")
    missing = {k: v for k, v in good.items() if k != "m.0.bias"}
    with pytest.raises(CheckpointError, match=r"0\.bias"):
        checkpoint.load_state(net, missing, "m.")
    extra = dict(good, **{"m.2.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"2\.weight"):
        checkpoint.load_state(net, extra, "m.")
    nan = dict(good)
    nan["m.0.weight"] = torch.full((4, 3), float("nan"))
    with pytest.raises(CheckpointError, match=r"0\.weight"):
        checkpoint.load_state(net, nan, "m.")


def test_save_load_round_trip(tmp_path):
    t = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64)}
    checkpoint.save(tmp_path / "c", t, {"x": [1, 2], "y": "z"})
    t2, meta = checkpoint.load(tmp_path / "c")
    assert meta == {"x": [1, 2], "y": "z"}
    assert t2.keys() == t.keys() and all(torch.equal(t[k], t2[k]) for k in t)
    # a JSON whose card was rewritten by hand (as zoo.install does, adding metrics) is taken as
    # written; any other edit no longer matches the metadata written with the tensors
    (tmp_path / "c.json").write_text(json.dumps({"x": [1, 2], "y": "z", "card": {"fd": 1.0}}))
    assert checkpoint.load(tmp_path / "c")[1] == {"x": [1, 2], "y": "z", "card": {"fd": 1.0}}
    (tmp_path / "c.json").write_text(json.dumps({"x": [1, 2], "y": "edited"}))
    with pytest.raises(CheckpointError, match=r"c\.json does not match the metadata.*\['y'\]"):
        checkpoint.load(tmp_path / "c")


def test_resume_after_sigkill(tmp_path):
    """A real process killed mid-run resumes to the same weights as an uninterrupted run."""
    steps = 3000
    run_dir = tmp_path / "killed"
    code = ("import torch; torch.set_num_threads(1)\n"
            "from effdiff.training import preset, Trainer\n"
            f"Trainer(preset('toy2d', steps={steps}, ckpt_every=50), {str(run_dir)!r}, progress=False).run()\n")
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (run_dir / "checkpoint.json").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    cfg = preset("toy2d", steps=steps, ckpt_every=50)
    resumed = Trainer(cfg, run_dir, progress=False)
    assert resumed.restore()
    killed_at = resumed.step
    assert 0 < killed_at < steps and killed_at % 50 == 0
    resumed.run(resume=True)
    whole = Trainer(cfg, tmp_path / "whole", progress=False).run()
    assert resumed.step == whole.step == steps
    assert_same_weights(resumed, whole)


def test_kill_between_tensor_and_json_writes(tmp_path, monkeypatch):
    """A kill after the new tensors are renamed into place but before the JSON is must not
    pair step-30 tensors with step-20 metadata: resume still matches an uninterrupted run."""
    cfg = small()
    Trainer(cfg, tmp_path / "a", progress=False).run(stop_after=20)
    real = checkpoint.atomic_write

    class Killed(BaseException):
        pass

    def dies_before_json(path, data):
        if path.suffix == ".json":
            raise Killed
        real(path, data)
    tr = Trainer(cfg, tmp_path / "a", progress=False)
    monkeypatch.setattr(checkpoint, "atomic_write", dies_before_json)
    with pytest.raises(Killed):
        tr.run(resume=True)           # trains to step 30, dies half-way through saving
    monkeypatch.setattr(checkpoint, "atomic_write", real)
    resumed = Trainer(cfg, tmp_path / "a", progress=False)
    resumed.restore()
    assert resumed.step == 30
    resumed.run(resume=True)
    whole = Trainer(cfg, tmp_path / "b", progress=False).run()
    assert_same_weights(resumed, whole)
