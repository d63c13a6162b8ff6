"""Fine-tuning on the MNIST backbones: mnist-unet (28x28 pixels) and mnist-ldm-dit (a DiT on mnist-ae's 7x7x4
latents; a control module there reads the image's condition map area-resized to the latent grid); the shipped
mnist-* adapters."""
import pytest
import torch

from effdiff import zoo
from effdiff.finetune import (Controlled, FinetuneTrainer, condition, controlled_denoiser, load, make_control,
                              preset)
from effdiff.finetune.controlnet_dit import ControlNetDiT
from effdiff.finetune.controlnet_xs import ControlNetXS
from effdiff.latent import LatentDenoiser

SHIPPED = {"mnist-unet-lora-thick": ("mnist-unet", "lora"),
           "mnist-unet-controlnet-xs-edges": ("mnist-unet", "control"),
           "mnist-ldm-dit-lora-thick": ("mnist-ldm-dit", "lora"),
           "mnist-ldm-dit-controlnet-edges": ("mnist-ldm-dit", "control")}
TINY = dict(steps=2, batch_size=2, warmup=1, ckpt_every=1, n_per_class=2)   # 20 images: encoding is cheap


def images(b=4):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(b, 1, 28, 28, generator=g) > 0.7).float() * 2 - 1


def test_condition_resized_to_a_latent_grid():
    x = images()
    c = condition("edges", x, size=7)
    assert c.shape == (4, 1, 7, 7) and c.min() >= -1 and c.max() <= 1
    assert torch.allclose(c, torch.nn.functional.avg_pool2d(condition("edges", x), 4), atol=1e-6)
    assert condition("edges", x, size=28).shape == x.shape


@pytest.mark.parametrize("name, kind, cls", [("mnist-unet", "controlnet-xs", ControlNetXS),
                                             ("mnist-ldm-dit", "controlnet", ControlNetDiT)])
def test_controlled_mnist_model_is_the_base_at_init(name, kind, cls):
    den = zoo.load(name)
    ctl = Controlled(den.net, make_control(kind, den.net))
    assert isinstance(ctl.control, cls)
    hint = condition("edges", images())                         # at image size; resized for the latent model
    D = controlled_denoiser(den, ctl, hint)
    shape = (4, *den.latent_shape) if isinstance(den, LatentDenoiser) else (4, 1, 28, 28)
    x, s, y = torch.randn(shape, generator=torch.Generator().manual_seed(1)), torch.full((4,), 1.5), torch.arange(4)
    with torch.no_grad():
        assert torch.equal(D(x, s, y), den(x, s, y))
        g = torch.Generator().manual_seed(2)
        for p in ctl.control.parameters():            # random, not constant: LayerNorm removes a constant shift
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        assert (D(x, s, y) - den(x, s, y)).abs().max() > 1e-3
    if isinstance(den, LatentDenoiser):                          # still decodes to images
        assert isinstance(D, LatentDenoiser) and D.decode(x[:1]).shape == (1, 1, 28, 28)


@pytest.mark.parametrize("name", list(SHIPPED))
def test_two_step_preset_run(name, tmp_path):
    cfg = preset(name, **TINY)
    tr = FinetuneTrainer(cfg, tmp_path, progress=False)
    base = cfg.base
    if base == "mnist-ldm-dit":                                  # latents (+ the hint on the 7x7 grid)
        want = 4 + (1 if "control" in name else 0)
        assert tr.x.shape[1:] == (want, 7, 7)
    else:
        assert tr.x.shape[1:] == (1, 28, 28)
    tr.run()
    m = load(base, tr.export())
    if "control" in name:
        assert isinstance(m, Controlled)
    else:
        assert isinstance(m, LatentDenoiser) == (base == "mnist-ldm-dit")


def test_latent_control_training_resumes_bit_identically(tmp_path):
    cfg = preset("mnist-ldm-dit-controlnet-edges", **TINY,
                 method_args={"copy_blocks": 1})
    whole = FinetuneTrainer(cfg, tmp_path / "whole", progress=False).run()
    FinetuneTrainer(cfg, tmp_path / "killed", progress=False).run(stop_after=1)
    resumed = FinetuneTrainer(cfg, tmp_path / "killed", progress=False).run(resume=True)
    a, b = whole.state()[0], resumed.state()[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_mnist_adapters_load_with_their_metrics(name):
    base, task = SHIPPED[name]
    card = zoo.card(name)
    assert card["task"] == task and card["card"]["base"] == base
    assert (zoo.WEIGHTS / f"{name}.safetensors").stat().st_size < 5 * 2 ** 20
    assert (zoo.WEIGHTS / f"{name}.md").exists()
    m = card["card"]["metrics"]
    keys = ("fd_target_thick", "base_fd_target_thick") if task == "lora" else ("edge_iou", "base_edge_iou")
    assert all(any(k.startswith(want) for k in m) for want in keys), sorted(m)
    got = load(base, zoo.WEIGHTS / name)
    assert isinstance(got, Controlled) == (task == "control")


def test_cli_sample_a_latent_model_with_its_control_reads_the_image_at_pixel_size(tmp_path, monkeypatch):
    """`effdiff sample --model mnist-ldm-dit --control IMAGE`: the edge map is computed on the 28x28
    image (as in training) and shrunk to the latent grid by the controlled denoiser."""
    import numpy as np
    from PIL import Image
    from effdiff import cli, zoo
    from effdiff.finetune import cli as ftcli
    img = np.zeros((28, 28), np.uint8)
    img[4:24, 12:16] = 255
    Image.fromarray(img).save(tmp_path / "one.png")
    sizes = []
    real = ftcli.read_image
    monkeypatch.setattr(ftcli, "read_image", lambda path, size, ch: sizes.append((size, ch)) or real(path, size, ch))
    out = tmp_path / "grid.png"
    args = ["sample", "--model", "mnist-ldm-dit", "--steps", "2", "--n", "2", "--quiet", "--out", str(out),
            "--control", str(tmp_path / "one.png"), "--control-model", str(zoo.WEIGHTS / "mnist-ldm-dit-controlnet-edges")]
    assert cli.main(args) == 0 and out.exists() and sizes == [(28, 1)]
