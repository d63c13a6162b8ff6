"""Issue 25: everything a user hands us - dotted file names never resolve to other files, every bad
file or flag is one line and exit 2, two runs never share an output folder. One test (or group) per
defect, numbered as in the issue; each fails on 4cce227."""
import dataclasses
import json
import shutil
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import effdiff as ed
from effdiff import checkpoint, cli, zoo
from effdiff.checkpoint import CheckpointError

UNET_LORA = zoo.WEIGHTS / "digits-unet-lora-thick"
UNET_XS = zoo.WEIGHTS / "digits-unet-controlnet-xs-edges"
SAMPLE = ["sample", "--model", "digits-unet", "--steps", "3", "--n", "4", "--quiet"]


def run_cli(argv, capsys):
    rc = cli.main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def one_line(err: str) -> str:
    """The error line: exactly one line, or argparse's usage lines then its error line."""
    lines = err.strip().splitlines()
    assert lines and ": error: " in lines[-1], err
    assert len(lines) == 1 or lines[0].startswith("usage:"), err
    return lines[-1]


def copy_pair(stem: Path, to: Path) -> Path:
    """Copy ``stem.safetensors`` + ``stem.json`` to the stem ``to``."""
    for ext in (".safetensors", ".json"):
        shutil.copyfile(f"{stem}{ext}", f"{to}{ext}")
    return to


def no_sampling(monkeypatch):
    calls = []
    monkeypatch.setattr(ed, "sample", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(AssertionError("sampled")))
    return calls


# ---- 1. a name with a dot never resolves to another file -------------------------------------

def test_checkpoint_paths_with_dots_name_their_own_files(tmp_path):
    checkpoint.save(tmp_path / "model", {"a": torch.zeros(2)}, {"v": 1})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    checkpoint.save(tmp_path / "model.v2", {"a": torch.ones(2)}, {"v": 2})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before} == before
    assert {p.name for p in tmp_path.iterdir()} == {"model.safetensors", "model.json", "model.v2.safetensors",
                                                    "model.v2.json"}
    for given in ("model.v2", "model.v2.safetensors", "model.v2.json"):
        t, meta = checkpoint.load(tmp_path / given)
        assert meta["v"] == 2 and torch.equal(t["a"], torch.ones(2)), given
    assert checkpoint.load(tmp_path / "model.safetensors")[1]["v"] == 1
    checkpoint.save(tmp_path / "run.1" / "x.json", {"a": torch.ones(1)}, {})
    assert sorted(p.name for p in (tmp_path / "run.1").iterdir()) == ["x.json", "x.safetensors"]
    with pytest.raises(CheckpointError, match=r"model\.v3\.safetensors"):
        checkpoint.load(tmp_path / "model.v3")


def test_save_pruned_with_a_dotted_name_keeps_the_other_file(tmp_path):
    from effdiff.prune.io import load_pruned, save_pruned
    den = zoo.load("digits-unet")
    save_pruned(den, tmp_path / "model")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    save_pruned(den, tmp_path / "model.v2", card={"note": "v2"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before} == before
    assert load_pruned(tmp_path / "model.v2").meta["card"]["note"] == "v2"


def test_lora_file_with_a_dotted_name_is_the_one_loaded(tmp_path, capsys):
    pytest.importorskip("peft")
    copy_pair(UNET_LORA, tmp_path / "thick.v2")
    (tmp_path / "thick.safetensors").write_bytes(b"another file that must not be read")
    (tmp_path / "thick.json").write_text("{}")
    grids = {}
    for key, spec in (("zoo", f"{UNET_LORA}:0.7"), ("dotted", f"{tmp_path / 'thick.v2.safetensors'}:0.7"),
                      ("stem", f"{tmp_path / 'thick.v2'}:0.7")):
        out = tmp_path / f"{key}.png"
        rc, err = run_cli(SAMPLE + ["--lora", spec, "--out", out], capsys)
        assert rc == 0, err
        grids[key] = out.read_bytes()
    assert grids["dotted"] == grids["zoo"] == grids["stem"]


def test_adapter_names_from_dotted_files_are_valid(tmp_path):
    pytest.importorskip("peft")
    from effdiff.finetune import adapter_names
    from effdiff.finetune.files import load_lora
    den = zoo.load("digits-unet")
    name = load_lora(den, copy_pair(UNET_LORA, tmp_path / "thick.v2"))
    assert "." not in name and adapter_names(den.net) == [name]


def test_control_model_with_a_dotted_name(tmp_path, capsys):
    pytest.importorskip("peft")
    from PIL import Image
    copy_pair(UNET_XS, tmp_path / "ctl.v2")
    img = np.zeros((16, 16), np.uint8)
    img[3:13, 6:10] = 255
    Image.fromarray(img).save(tmp_path / "c.png")
    rc, err = run_cli(SAMPLE + ["--control", tmp_path / "c.png", "--control-model", tmp_path / "ctl.v2",
                                "--out", tmp_path / "g.png"], capsys)
    assert rc == 0, err


# ---- 2. a decompression bomb as --control image -----------------------------------------------

def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels (no real image data)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("content", ["bomb", "warning-size", "truncated", "text"])
def test_bad_control_images_are_one_line(tmp_path, capsys, monkeypatch, content):
    pytest.importorskip("peft")
    data = {"bomb": png_header(30000, 30000), "warning-size": png_header(10000, 10000),
            "truncated": png_header(16, 16)[:40], "text": b"not an image"}[content]
    (tmp_path / "c.png").write_bytes(data)
    calls = no_sampling(monkeypatch)
    rc, err = run_cli(SAMPLE + ["--control", tmp_path / "c.png", "--control-model", UNET_XS,
                                "--out", tmp_path / "g.png"], capsys)
    assert rc == 2 and "c.png" in one_line(err) and calls == [] and not (tmp_path / "g.png").exists()


# ---- 3. --lora FILE:nan ------------------------------------------------------------------------

@pytest.mark.parametrize("weight", ["nan", "inf", "-inf", "1e308"])
def test_lora_weight_must_be_finite(tmp_path, capsys, monkeypatch, weight):
    calls = no_sampling(monkeypatch)
    rc, err = run_cli(SAMPLE + ["--lora", f"{UNET_LORA}:{weight}", "--out", tmp_path / "g.png"], capsys)
    assert rc == 2 and "--lora" in one_line(err) and weight in err and calls == []


# ---- 4. a LoRA file whose tensors do not fit its rank or model ---------------------------------

def _resaved_lora(tmp_path, edit):
    tensors, meta = checkpoint.load(UNET_LORA)
    edit(tensors, meta)
    checkpoint.save(tmp_path / "bad", tensors, meta)        # valid hashes over the edited content
    return tmp_path / "bad"


@pytest.mark.parametrize("how", ["rank", "declared-rank", "missing-key", "extra-key", "nan"])
def test_lora_that_does_not_fit_is_a_checkpoint_error(tmp_path, capsys, how):
    pytest.importorskip("peft")
    from effdiff.finetune import adapter_names
    from effdiff.finetune.files import load_lora

    def edit(t, meta):
        a_key = sorted(k for k in t if "lora_A" in k)[0]
        if how == "rank":
            for k in [k for k in t if "lora_A" in k]:
                t[k] = t[k][:1].clone()
        elif how == "declared-rank":
            meta["lora"]["rank"] = 2
        elif how == "missing-key":
            del t[a_key]
        elif how == "extra-key":
            t[a_key.replace("lora_A", "lora_C")] = t[a_key].clone()
        else:
            t[a_key] = t[a_key] * float("nan")
    path = _resaved_lora(tmp_path, edit)
    den = zoo.load("digits-unet")
    with pytest.raises(CheckpointError, match="bad"):
        load_lora(den, path)
    assert adapter_names(den.net) == []                      # nothing half-attached
    rc, err = run_cli(SAMPLE + ["--lora", path, "--out", tmp_path / "g.png"], capsys)
    assert rc == 2 and "bad" in one_line(err) and not (tmp_path / "g.png").exists()


# ---- 9. two runs never share an output folder --------------------------------------------------

def test_two_trainings_into_one_folder_the_second_refuses(tmp_path, capsys, monkeypatch):
    from effdiff.training import Trainer
    started, release = threading.Event(), threading.Event()
    real = Trainer.train_step

    def slow_step(self):
        if threading.current_thread().name == "first":
            started.set()
            assert release.wait(60)
        return real(self)
    monkeypatch.setattr(Trainer, "train_step", slow_step)
    out = tmp_path / "run"
    argv = ["train", "--preset", "toy2d", "--out", str(out), "--steps", "4", "--batch-size", "8", "--quiet"]
    result = {}
    first = threading.Thread(target=lambda: result.setdefault("rc", cli.main(argv)), name="first")
    first.start()
    try:
        assert started.wait(60)
        for extra in ([], ["--overwrite"], ["--resume"]):
            rc = cli.main(argv + extra)
            err = capsys.readouterr().err
            assert rc == 2 and "in use" in one_line(err), (extra, err)
    finally:
        release.set()
        first.join(60)
    assert result["rc"] == 0
    assert json.loads((out / "model.json").read_text())["card"]["steps"] == 4
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.json", "checkpoint.safetensors", "model.json",
                                                     "model.safetensors"]


def test_a_lock_left_by_a_killed_run_does_not_block_resume(tmp_path):
    import subprocess
    import sys
    from effdiff.training import Trainer, preset
    cfg = preset("toy2d", steps=20, ckpt_every=10)
    Trainer(cfg, tmp_path, progress=False).run(stop_after=10)
    code = ("import os, sys; from effdiff.io import run_lock; run_lock(sys.argv[1]).acquire(); "
            "os.kill(os.getpid(), 9)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False, timeout=120)
    assert Trainer(cfg, tmp_path, progress=False).run(resume=True).step == 20


# ---- 11. a pruned file without hashes whose plan disagrees with its tensors --------------------

@pytest.mark.parametrize("plan", [{"widths": {"no.such.block": 3}}, {"widths": {"input_blocks.1.0": 0}},
                                  {"widths": {"input_blocks.1.0": 7}}, {"dropped": [99]}, {"dropped": ["x"]},
                                  {"heads": {"middle_block.1": [0, 5]}}, {"widths": [1, 2]}, {"widths": None}])
def test_pruned_file_with_a_wrong_plan_is_a_checkpoint_error(tmp_path, plan):
    from effdiff.prune.io import load_pruned, save_pruned
    save_pruned(zoo.load("digits-unet"), tmp_path / "p")
    meta = json.loads((tmp_path / "p.json").read_text())
    for key in ("sha256", "effdiff_write_id"):
        meta.pop(key)
    meta["pruning"].update(plan)
    tensors = checkpoint.load(tmp_path / "p")[0]
    save_file(tensors, str(tmp_path / "old.safetensors"))          # an old file: no header, no hashes
    (tmp_path / "old.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="old"):
        load_pruned(tmp_path / "old")


# ---- 12. a damaged manifest.json in a pairs folder ---------------------------------------------

@pytest.mark.parametrize("text", ['{"format": "effdiff-pairs-1", "shards": 0}', "{not json", "[]", "null",
                                  '{"format": "effdiff-pairs-1", "shards": "3"}', '{"shards": 1}',
                                  '{"format": "effdiff-pairs-1", "shards": 1' + "0" * 5000 + "}",
                                  "[" * 100000, b"\xff\xfe\x00{"],
                         ids=["shards0", "invalid", "list", "null", "str", "no-format", "huge", "deep", "utf16"])
def test_damaged_pairs_manifest_is_a_clear_error(tmp_path, text):
    from effdiff.distill import pairs as P
    man = tmp_path / "manifest.json"
    man.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises((CheckpointError, ValueError), match="manifest.json"):
        P.load(tmp_path)


# ---- 13. python -m effdiff.distributed sample checks everything before compute -----------------

@pytest.mark.parametrize("args", [["--samples", "0"], ["--samples", "-3"], ["--steps", "0"], ["--seed", "-1"],
                                  ["--guidance", "nan"], ["--out", "blocker/g.png"], ["--out", "g.xyz"],
                                  ["--save-tensor", "blocker/x.safetensors"], ["--model", "digits-classifier"],
                                  ["--model", "nope"], ["--solver", "nope"], ["--schedule", "nope"],
                                  ["--out", "."], ["--save-tensor", "."]])
def test_distributed_sample_validates_before_compute(tmp_path, capsys, monkeypatch, args):
    from effdiff.distributed.cli import main
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file")
    calls = no_sampling(monkeypatch)
    rc = main(["sample", "--steps", "2", "--samples", "2"] + args)
    err = capsys.readouterr().err
    assert rc == 2 and "effdiff.distributed sample: error:" in one_line(err) and calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_distributed_sample_writes_both_outputs(tmp_path, capsys):
    from effdiff.distributed.cli import main
    rc = main(["sample", "--steps", "2", "--samples", "2", "--out", str(tmp_path / "g.png"),
               "--save-tensor", str(tmp_path / "x.safetensors")])
    assert rc == 0 and (tmp_path / "g.png").exists() and (tmp_path / "x.safetensors").exists()


# ---- 14. the reflow presets keep their teacher pairs inside --out and honour --quiet -----------

def test_reflow_preset_pairs_live_in_the_run_folder(tmp_path, monkeypatch, capsys):
    from effdiff.distill import DistillTrainer, presets
    monkeypatch.chdir(tmp_path)
    for seed in (0, 1):
        cfg = presets.get("digits-unet-reflow", steps=1, batch_size=4, seed=seed)
        cfg = dataclasses.replace(cfg, args={**cfg.args, "pairs_n": 4})
        DistillTrainer(cfg, tmp_path / f"out{seed}", progress=False).run()
        assert (tmp_path / f"out{seed}" / "pairs" / "manifest.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out0", "out1"]
    captured = capsys.readouterr()
    assert "pairs" not in captured.err + captured.out                 # progress=False: no pair bar


# ---- 5. schedule JSON that is not UTF-8, holds a huge number or nests deeply -------------------

SCHED = b'{"format": "effdiff-schedule-1", "sigmas": %s}'


@pytest.mark.parametrize("data", [b"\xff\xfe[1, 0]", SCHED % (b"[1" + b"0" * 5000 + b", 0]"), b"[" * 100000,
                                  b"{", b"null", SCHED % b'"x"', SCHED % b"[[1], [0]]", SCHED % b'["a", 0]',
                                  SCHED % (b"[1" + b"0" * 400 + b", 0]"), SCHED % b"[1e999, 0]", SCHED % b"{}",
                                  b'{"format": "effdiff-schedule-1", "sigmas": [1, 0], "meta": 3}'],
                         ids=["utf16", "huge", "deep", "invalid", "null", "str", "nested", "str-item", "big-int",
                              "inf", "object", "meta"])
def test_bad_schedule_json_is_one_clear_error(tmp_path, data):
    from effdiff import schedule_opt
    path = tmp_path / "sched.json"
    path.write_bytes(data)
    with pytest.raises((ValueError, KeyError, TypeError), match="sched.json"):
        schedule_opt.load_schedule(path)


# ---- 8. bench --models '' --------------------------------------------------------------------

def test_bench_rejects_an_empty_model_list(tmp_path, capsys, monkeypatch):
    import effdiff.bench
    calls = []
    monkeypatch.setattr(effdiff.bench, "run", lambda *a, **k: calls.append(1))
    for models in ("", ",", " "):
        rc, err = run_cli(["bench", "--quick", "--models", models], capsys)
        assert rc == 2 and "--models" in one_line(err) and calls == [], models


# ---- minor: train --preset nope names every family ---------------------------------------------

def test_unknown_train_preset_lists_every_family(capsys):
    from effdiff.distill import presets as dp
    from effdiff.finetune import presets as fp
    from effdiff.training.presets import PRESETS
    rc, err = run_cli(["train", "--preset", "nope", "--out", "/nonexistent/x"], capsys)
    line = one_line(err)
    assert rc == 2
    for name in list(PRESETS) + list(fp.PRESETS) + list(dp.PRESETS):
        assert name in line, name


def test_a_bench_into_a_folder_in_use_refuses_and_leaves_it_alone(tmp_path, capsys):
    """Issue 25: two runs never share an output folder; the bench takes the same run lock as training."""
    from effdiff.io import LOCK_NAME, RunLock
    out = tmp_path / "bench"
    with RunLock(out):                                   # another run holds the folder
        rc = cli.main(["bench", "--quick", "--models", "digits-dit", "--out", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and "in use" in one_line(err), err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]   # nothing written
    assert not out.exists()                              # the holder made it and wrote nothing
