"""ControlNet on the DiT (PixArt-δ's ControlNet-Transformer) and the shipped digits-dit adapters."""
import json

import numpy as np
import pytest
import torch

from effdiff import checkpoint as ckpt, timesteps, zoo
from effdiff.finetune import Controlled, adherence, condition, controlled_denoiser, load, make_control
from effdiff.finetune.controlnet_dit import ControlNetDiT
from effdiff.finetune.methods import METHODS
from effdiff.hooks.registry import hooks_of
from effdiff.sampling import randn, sample

SHIPPED = {"lora": "digits-dit-lora-thick", "control": "digits-dit-controlnet-edges"}


@pytest.fixture(scope="module")
def den():
    return zoo.load("digits-dit")


def batch(b=4):
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(b, 1, 8, 8, generator=g) * 2 - 1
    return torch.randn(b, 1, 8, 8, generator=g), torch.full((b,), 2.0), torch.arange(b), condition("edges", x0)


def perturb(module, seed=0, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def test_controlled_dit_is_the_base_model_at_init(den):
    x, s, y, hint = batch()
    ctl = Controlled(den.net, make_control("controlnet", den.net))
    assert isinstance(ctl.control, ControlNetDiT) and len(ctl.control.blocks) == len(den.net.blocks) // 2
    D = controlled_denoiser(den, ctl, hint)
    with torch.no_grad():
        assert (D(x, s, y) - den(x, s, y)).abs().max() <= 1e-6
        perturb(ctl.control)
        assert (D(x, s, y) - den(x, s, y)).abs().max() > 1e-3        # the control does reach the output
        both = D(torch.cat([x, x]), torch.cat([s, s]), torch.cat([y, y]))   # CFG's doubled batch
        assert torch.allclose(both[:4], both[4:], atol=1e-6)
    assert all(not hooks_of(m) for m in den.net.modules())            # hooks live for one call only
    with pytest.raises(TypeError, match="on a DiT: controlnet"):
        make_control("controlnet-xs", den.net)
    with pytest.raises(ValueError, match="copy_blocks"):
        make_control("controlnet", den.net, copy_blocks=len(den.net.blocks) + 1)


def test_gradients_reach_only_the_control():
    x, s, y, hint = batch()
    ctl = METHODS["controlnet"].build(zoo.load("digits-dit"), {})
    base = {k: v.clone() for k, v in ctl.base.state_dict().items()}
    assert all(not p.requires_grad for p in ctl.base.parameters())
    trainable = [p for p in ctl.parameters() if p.requires_grad]
    for step in range(2):
        for p in trainable:
            p.grad = None
        ctl(x, s, y, hint).pow(2).mean().backward()
        assert all(p.grad is None for p in ctl.base.parameters())
        c = ctl.control
        assert all(lin.weight.grad.abs().sum() > 0 for lin in c.zero_linears)    # zero outputs get a gradient
        if step == 1:      # once the zero Linears moved, the hint embedding and the copied blocks learn too
            assert c.hint_embed.weight.grad.abs().sum() > 0
            assert all(p.grad.abs().sum() > 0 for p in c.blocks[0].attn.parameters())
        with torch.no_grad():                               # one plain SGD step (torch.optim imports slowly)
            for p in trainable:
                p.add_(p.grad, alpha=-0.1)
    after = ctl.base.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base.items())


def test_control_file_round_trip_without_pickle(den, tmp_path):
    x, s, y, hint = batch()
    ctl = METHODS["controlnet"].build(zoo.load("digits-dit"), {"copy_blocks": 2})
    perturb(ctl.control, seed=3)
    METHODS["controlnet"].save(ctl, tmp_path / "ctl", {"method": "controlnet"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctl.json", "ctl.safetensors"]
    meta = json.loads((tmp_path / "ctl.json").read_text())
    assert meta["kind"] == "controlnet" and meta["config"] == {"hint_channels": 1, "copy_blocks": 2}
    back = load(den, tmp_path / "ctl")                       # finetune.load: the same path as the UNet's
    assert isinstance(back, Controlled) and isinstance(back.control, ControlNetDiT)
    with torch.no_grad():
        assert torch.equal(back(x, s, y, hint), ctl(x, s, y, hint))
    with pytest.raises(ckpt.CheckpointError, match="other base weights"):
        load(zoo.load("digits-dit-xattn"), tmp_path / "ctl")


def test_shipped_digits_dit_files_load_with_their_metrics(den):
    for task, name in SHIPPED.items():
        card = zoo.card(name)
        assert card["task"] == task and card["card"]["base"] == "digits-dit"
        assert (zoo.WEIGHTS / f"{name}.safetensors").stat().st_size < 5 * 2 ** 20
        assert (zoo.WEIGHTS / f"{name}.md").exists()
        m = card["card"]["metrics"]
        keys = ("fd_target_thick", "base_fd_target_thick") if task == "lora" else ("edge_iou", "base_edge_iou")
        assert all(any(k.startswith(want) for k in m) for want in keys), sorted(m)
    lora = load("digits-dit", zoo.WEIGHTS / SHIPPED["lora"])
    x, s, y, _ = batch(2)
    with torch.no_grad():
        assert (lora(x, s, y) - den(x, s, y)).abs().max() > 1e-3


def test_shipped_control_follows_edges_better_than_the_base(den):
    """Cheap adherence check: 40 samples, DDIM 8 steps, the same noise with and without the control."""
    from effdiff.bench.finetune import hints_for
    labels = torch.arange(40) % 10
    hint = hints_for(labels)
    ctl = load("digits-dit", zoo.WEIGHTS / SHIPPED["control"])
    sig = timesteps.get("uniform", 8, den.process)
    x_T = randn((40, 1, 8, 8), seed=0) * sig[0]
    with torch.no_grad():
        plain = sample(den, x_T, sig, "ddim", cond=labels)
        guided = sample(controlled_denoiser(den, ctl, hint), x_T, sig, "ddim", cond=labels)
    iou_base, iou_ctl = adherence("edges", plain, hint)["iou"], adherence("edges", guided, hint)["iou"]
    assert iou_ctl > iou_base + 0.05, (iou_base, iou_ctl)


def test_cli_sample_with_the_shipped_dit_control(tmp_path):
    """`effdiff sample --model digits-dit --control IMAGE --control-model FILE` end to end."""
    from PIL import Image
    from effdiff import cli
    img = np.zeros((8, 8), np.uint8)
    img[1:7, 3:5] = 255                                       # a "1"
    Image.fromarray(img).save(tmp_path / "one.png")
    out = tmp_path / "grid.png"
    args = ["sample", "--model", "digits-dit", "--steps", "4", "--n", "4", "--quiet", "--out", str(out),
            "--control", str(tmp_path / "one.png"), "--control-model", str(zoo.WEIGHTS / SHIPPED["control"])]
    assert cli.main(args) == 0 and out.exists()


def test_dit_control_training_resumes_bit_identically(tmp_path):
    """The same FinetuneConfig / Trainer as the UNet's: kill after 2 of 4 steps, resume, same weights."""
    from effdiff.finetune import FinetuneConfig, FinetuneTrainer
    cfg = FinetuneConfig(base="digits-dit", method="controlnet", method_args={"copy_blocks": 1}, condition="edges",
                         steps=4, batch_size=8, warmup=1, ckpt_every=2, ema_decay=0.9)
    whole = FinetuneTrainer(cfg, tmp_path / "whole", progress=False).run()
    FinetuneTrainer(cfg, tmp_path / "killed", progress=False).run(stop_after=2)
    resumed = FinetuneTrainer(cfg, tmp_path / "killed", progress=False).run(resume=True)
    a, b = whole.state()[0], resumed.state()[0]
    assert resumed.step == whole.step == 4 and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ctl = load("digits-dit", whole.export())
    assert isinstance(ctl.control, ControlNetDiT) and len(ctl.control.blocks) == 1
