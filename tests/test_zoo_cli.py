"""The zoo, the command line and the bench runner, end to end on the shipped models."""
import json
import shutil

import pytest
import torch

import effdiff as ed
from effdiff import checkpoint as ckpt
from effdiff.bench import BenchConfig, run
from effdiff.cli import main
from effdiff.data import digits
from effdiff.metrics import Scorer


def test_zoo_names_and_sizes():
    assert {"digits-unet", "digits-dit", "digits-classifier"} <= set(ed.zoo.names())
    for name in ed.zoo.names():
        assert (ed.zoo.WEIGHTS / f"{name}.safetensors").stat().st_size < 5 * 2 ** 20
        card = ed.zoo.card(name)["card"]
        for key in ("preset", "seed", "steps", "wall_time_s", "machine", "metrics", "command"):
            assert key in card, (name, key)
        assert (ed.zoo.WEIGHTS / f"{name}.md").exists()


def test_zoo_load_returns_ready_denoisers():
    unet, dit = ed.zoo.load("digits-unet"), ed.zoo.load("digits-dit")
    assert unet.cond_classes == 10 and unet.null_class == 10 and unet.prediction == "eps"
    assert dit.prediction == "velocity" and dit.process.name == "flow"
    assert not any(p.requires_grad for p in unet.parameters())
    x = torch.randn(4, 1, 8, 8)
    out = ed.CFG(unet, 2.0)(x, torch.full((4,), 1.0), torch.arange(4))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_unknown_model_names_the_problem():
    with pytest.raises(KeyError, match="unknown zoo model 'nope'.*digits-unet"):
        ed.zoo.load("nope")


def test_corrupt_and_mismatched_checkpoints(tmp_path):
    src = ed.zoo.WEIGHTS / "digits-classifier"
    for ext in (".safetensors", ".json"):
        shutil.copyfile(src.with_suffix(ext), (tmp_path / "m").with_suffix(ext))
    assert isinstance(ed.zoo.from_checkpoint(tmp_path / "m"), torch.nn.Module)
    # mismatched: the JSON claims a wider network than the tensors hold (the config SHA-256
    # catches the edit; without it, the tensor shapes do)
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["model"]["width"] = 48
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match="m.json was edited"):
        ed.zoo.from_checkpoint(tmp_path / "m")
    del meta["sha256"]
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match="does not match the model"):
        ed.zoo.from_checkpoint(tmp_path / "m")
    # corrupt: truncated tensors
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        ed.zoo.from_checkpoint(tmp_path / "m")


def test_cli_sample_writes_a_grid(tmp_path, capsys):
    out = tmp_path / "g.png"
    assert main(["sample", "--model", "digits-dit", "--steps", "4", "--n", "12", "--out", str(out), "--quiet",
                 "--guidance", "1.5", "--classes", "3,7"]) == 0
    from PIL import Image
    img = Image.open(out)
    assert img.size[0] > 8 and img.size[1] > 8
    assert "8 NFE" not in capsys.readouterr().out  # 4 steps of dpmpp-2m = 4 NFE
    assert main(["sample", "--solver", "nope", "--out", str(out), "--quiet"]) == 2


def test_bench_rows_and_files(tmp_path):
    configs = [BenchConfig("digits-unet", "ddim-20", "ddim", "uniform", 20, reference=True),
               BenchConfig("digits-unet", "dpmpp-2m-5", "dpmpp-2m", "logsnr", 5)]
    res = run(configs=configs, n_samples=30, repeats=1, out=tmp_path, verbose=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved) >= {"machine", "floor_fd", "rows"}
    keys = {"model", "config", "solver", "schedule", "nfe", "ms_per_sample", "speedup", "fd", "class_acc",
            "macs_per_sample"}
    for row in saved["rows"]:
        assert keys <= set(row)
    ref, fast = res["rows"]
    assert (ref["nfe"], fast["nfe"]) == (20, 5)
    assert ref["speedup"] == 1.0
    assert fast["macs_per_sample"] == pytest.approx(ref["macs_per_sample"] / 4, rel=0.01)
    assert (tmp_path / "pareto.png").exists() and (tmp_path / "grids" / "digits-unet__ddim-20.png").exists()


@pytest.mark.parametrize("name", ["digits-unet", "digits-dit"])
def test_zoo_models_sample_real_digits(name):
    """10-step DPM-Solver++(2M) samples are recognisable digits of the asked class, and their FD
    is within 3x of the real-vs-real floor (held-out vs train, same sample count)."""
    den = ed.zoo.load(name)
    x_train, _ = digits("train")
    x_test, _ = digits("test")
    scorer = Scorer(ed.zoo.load("digits-classifier"), x_train)
    n = len(x_test)
    sig = ed.timesteps.logsnr_uniform(10, den.process)
    labels = torch.arange(n) % 10
    x = ed.sample(den, ed.sampling.randn((n, 1, 8, 8), seed=1) * sig[0].float(), sig, "dpmpp-2m", cond=labels)
    q = scorer.score(x, labels)
    assert q["class_acc"] >= 0.9
    assert q["fd"] <= 3 * scorer.floor(x_test)
