"""What `effdiff sample --lora FILE[:w] --control IMAGE` and `effdiff train --preset` call."""
import numpy as np
import pytest
import torch

pytest.importorskip("peft")

from effdiff import zoo  # noqa: E402
from effdiff.finetune import add_lora, adapter_names, save_lora  # noqa: E402
from effdiff.finetune.cli import parse_lora, read_image, sample_denoiser, train_preset  # noqa: E402
from effdiff.finetune.lora import weights_of  # noqa: E402
from effdiff.finetune.methods import METHODS  # noqa: E402


def test_parse_lora(tmp_path):
    den = zoo.load("digits-unet")
    add_lora(den, rank=2, name="a")
    save_lora(den, tmp_path / "style", "a")
    assert parse_lora(str(tmp_path / "style.safetensors:0.5")) == (tmp_path / "style", 0.5)
    assert parse_lora(str(tmp_path / "style")) == (tmp_path / "style", 1.0)
    with pytest.raises(ValueError, match="must be a number"):
        parse_lora(str(tmp_path / "style:abc"))
    with pytest.raises(FileNotFoundError, match="no "):
        parse_lora(str(tmp_path / "missing:1"))


def test_sample_denoiser_with_lora_and_control(tmp_path):
    from PIL import Image
    base = zoo.load("digits-unet")
    src = zoo.load("digits-unet")
    add_lora(src, rank=2, name="a")
    with torch.no_grad():
        for n, p in src.net.named_parameters():
            if ".lora_B" in n:
                p.normal_(std=0.05)
    save_lora(src, tmp_path / "style", "a")
    ctl = METHODS["controlnet-xs"].build(zoo.load("digits-unet"), {})
    with torch.no_grad():
        for p in ctl.control.parameters():
            p.add_(0.05)
    METHODS["controlnet-xs"].save(ctl, tmp_path / "xs", {})
    img = np.zeros((16, 16), np.uint8)
    img[3:13, 6:10] = 255
    Image.fromarray(img).save(tmp_path / "one.png")
    assert read_image(tmp_path / "one.png", 8).shape == (1, 1, 8, 8)
    den = sample_denoiser(zoo.load("digits-unet"), [f"{tmp_path / 'style'}:0.5"], str(tmp_path / "one.png"),
                          str(tmp_path / "xs"), n=3)
    x, s, y = torch.randn(3, 1, 8, 8), torch.full((3,), 1.0), torch.arange(3)
    with torch.no_grad():
        assert (den(x, s, y) - base(x, s, y)).abs().max() > 1e-4
    inner = den.net.controlled.base
    assert adapter_names(inner) == ["style"] and weights_of(inner) == pytest.approx({"style": 0.5})
    with pytest.raises(ValueError, match="needs --control-model"):
        sample_denoiser(zoo.load("digits-unet"), [], str(tmp_path / "one.png"))


def test_train_preset_writes_a_loadable_adapter(tmp_path):
    path = train_preset("digits-unet-lora-thick", tmp_path / "run", progress=False, steps=2, batch_size=4)
    assert path.with_suffix(".safetensors").exists()
    meta = __import__("json").loads(path.with_suffix(".json").read_text())
    assert meta["card"]["steps"] == 2 and meta["card"]["trainable_params"] > 0


def test_cli_sample_with_the_shipped_lora_changes_the_samples(tmp_path):
    """`effdiff sample --lora FILE:w` end to end: the shipped thick-stroke LoRA changes the grid;
    weight 0 leaves it as the base model's; a control image without a model is a clear error."""
    from PIL import Image
    from effdiff import cli
    lora = str(zoo.WEIGHTS / "digits-unet-lora-thick")
    args = ["sample", "--model", "digits-unet", "--steps", "4", "--n", "10", "--quiet"]
    grids = {}
    for name, extra in (("base", []), ("w0", ["--lora", f"{lora}:0"]), ("w1", ["--lora", lora])):
        out = tmp_path / f"{name}.png"
        assert cli.main(args + extra + ["--out", str(out)]) == 0
        grids[name] = np.asarray(Image.open(out), dtype=np.float64)
    assert np.array_equal(grids["base"], grids["w0"])
    assert np.abs(grids["w1"] - grids["base"]).mean() > 1.0      # thick strokes: visibly different
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "c.png")
    assert cli.main(args + ["--control", str(tmp_path / "c.png"), "--out", str(tmp_path / "x.png")]) == 2
