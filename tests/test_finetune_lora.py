"""LoRA through peft: targets, zero-start, exact merge / unmerge, LoRA arithmetic, files."""
import json

import pytest
import torch
from torch import nn

pytest.importorskip("peft")

from effdiff import checkpoint as ckpt  # noqa: E402
from effdiff.finetune import (LoRAConfig, add_lora, adapter_names, load_lora, merge, remove_lora,  # noqa: E402
                              save_lora, set_weights, trainable_parameters)
from effdiff.finetune.lora import layers, weights_of  # noqa: E402
from effdiff.finetune.targets import skipped_names, target_names  # noqa: E402
from effdiff.models import build  # noqa: E402


def tiny_unet():
    torch.manual_seed(0)
    return build("unet", {"model_channels": 16, "channel_mult": (1, 2), "num_res_blocks": 1, "num_classes": 10})


def tiny_dit():
    torch.manual_seed(0)
    return build("dit", {"hidden_size": 32, "depth": 2, "num_heads": 2, "num_classes": 10})


def inputs(b=3):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 1, 8, 8, generator=g), torch.tensor([10.0, 300.0, 900.0][:b]), torch.arange(b)


def randomize(net, name, std=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in net.named_parameters():
            if ".lora_" in n and f".{name}." in n:
                p.copy_(torch.randn(p.shape, generator=g) * std)


def test_targets_by_kind():
    net = tiny_unet()
    att = target_names(net, ("attention",))
    assert att and all(".attn." in n for n in att)
    conv = target_names(net, ("conv",))
    assert all(isinstance(net.get_submodule(n), nn.Conv2d) for n in conv)
    assert "input_blocks.0.0" in skipped_names(net, ("conv",))     # the Conv subclass peft cannot rebuild
    assert not any(n.startswith("cond_embed") for n in target_names(net))
    dit = target_names(tiny_dit(), ("attention", "mlp"))
    assert "blocks.0.attn.qkv" in dit and "blocks.1.mlp.fc2" in dit
    with pytest.raises(ValueError, match="unknown layer kind"):
        target_names(net, ("nope",))
    with pytest.raises(ValueError, match="no attention layers"):
        target_names(nn.Sequential(nn.Linear(2, 2)), ("attention",))


@pytest.mark.parametrize("make", [tiny_unet, tiny_dit])
def test_fresh_adapter_changes_nothing_and_trains_only_itself(make):
    net = make()
    x, t, y = inputs()
    ref = net(x, t, y)
    base_params = sum(p.numel() for p in net.parameters())
    add_lora(net, LoRAConfig(rank=2), name="a")
    assert torch.equal(net(x, t, y), ref)
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n and ".a." in n for n in trainable)
    assert trainable_parameters(net) < 0.15 * base_params


def test_merge_unmerge_round_trip_is_exact_in_fp32():
    net = tiny_unet()
    x, t, y = inputs()
    base = {k: v.clone() for k, v in net.state_dict().items()}
    add_lora(net, LoRAConfig(rank=4), name="a")
    randomize(net, "a")
    with torch.no_grad():
        unmerged = net(x, t, y)
        h = merge(net)
        merged = net(x, t, y)
        moved = max((m.get_base_layer().weight - base[n + ".weight"]).abs().max().item() for n, m in layers(net).items())
        h.unmerge()
    assert moved > 1e-3                                   # the merge really changed the weights
    assert (merged - unmerged).abs().max() < 1e-4 * unmerged.abs().max()
    for n, m in layers(net).items():
        assert torch.equal(m.get_base_layer().weight, base[n + ".weight"])     # bit for bit
    assert torch.allclose(net(x, t, y), unmerged, atol=0, rtol=0)


def test_peft_subtractive_unmerge_within_1e6():
    net = tiny_dit()
    base = {k: v.clone() for k, v in net.state_dict().items()}
    add_lora(net, LoRAConfig(rank=4), name="a")
    add_lora(net, LoRAConfig(rank=2), name="b")
    randomize(net, "a", seed=1)
    randomize(net, "b", seed=2)
    merge(net, {"a": 1.0, "b": -0.7}).unmerge(exact=False)
    err = max((m.get_base_layer().weight - base[n + ".weight"]).abs().max().item() for n, m in layers(net).items())
    assert err <= 1e-6


def test_lora_arithmetic_weights_add_linearly():
    net = nn.Sequential(nn.Linear(6, 5), nn.Conv2d(1, 1, 1))   # a user's module; only the Linear is used
    lin = nn.Sequential(net[0])
    add_lora(lin, LoRAConfig(rank=2, alpha=4.0, kinds=("mlp",)), name="a")
    add_lora(lin, LoRAConfig(rank=3, kinds=("mlp",)), name="b")
    randomize(lin, "a", seed=3)
    randomize(lin, "b", seed=4)
    x = torch.randn(7, 6)
    layer = lin[0]
    W = layer.get_base_layer().weight.detach().clone()
    d_a = (4.0 / 2) * layer.lora_B["a"].weight @ layer.lora_A["a"].weight
    d_b = (3 / 3) * layer.lora_B["b"].weight @ layer.lora_A["b"].weight
    set_weights(lin, {"a": 0.5, "b": -1.5})
    assert weights_of(lin) == pytest.approx({"a": 0.5, "b": -1.5})
    expect = x @ (W + 0.5 * d_a - 1.5 * d_b).t() + layer.get_base_layer().bias
    assert torch.allclose(lin(x), expect, atol=1e-6)
    with merge(lin):
        assert torch.allclose(layer.get_base_layer().weight, W + 0.5 * d_a - 1.5 * d_b, atol=1e-6)
        with pytest.raises(RuntimeError, match="unmerge"):
            set_weights(lin, {"a": 1.0})
    set_weights(lin, {"b": 1.0})                          # only b active
    assert torch.allclose(lin(x), x @ (W + d_b).t() + layer.get_base_layer().bias, atol=1e-6)
    with pytest.raises(KeyError, match="no LoRA adapter"):
        set_weights(lin, {"c": 1.0})


def test_save_load_round_trip_without_pickle(tmp_path):
    net = tiny_unet()
    add_lora(net, LoRAConfig(rank=4), name="style")
    randomize(net, "style")
    x, t, y = inputs()
    with torch.no_grad():
        want = net(x, t, y)
    stem = save_lora(net, tmp_path / "style", "style")
    st, js = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    assert st.read_bytes()[8:9] == b"{"                   # a safetensors header, not a pickle
    meta = json.loads(js.read_text())
    assert meta["format"] == "effdiff-lora-1" and meta["lora"]["rank"] == 4
    assert st.stat().st_size < 200_000
    other = tiny_unet()
    assert load_lora(other, stem, weight=1.0) == "style"
    with torch.no_grad():
        assert torch.allclose(other(x, t, y), want, atol=1e-6, rtol=0)
    wrong = tiny_unet()
    with torch.no_grad():
        wrong.out[-1].weight.add_(1.0)
    with pytest.raises(ckpt.CheckpointError, match="other base weights"):
        load_lora(wrong, stem)


def test_remove_lora_restores_the_module():
    net = tiny_dit()
    x, t, y = inputs()
    ref = net(x, t, y)
    add_lora(net, LoRAConfig(rank=2), name="a")
    randomize(net, "a")
    assert not torch.equal(net(x, t, y), ref)
    remove_lora(net)
    assert not layers(net) and adapter_names(net) == []
    assert type(net.blocks[0].attn.qkv) is nn.Linear
    assert torch.equal(net(x, t, y), ref)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="rank"):
        LoRAConfig(rank=0)
    net = tiny_unet()
    add_lora(net, LoRAConfig(rank=2), name="a")
    with pytest.raises(ValueError, match="already attached"):
        add_lora(net, LoRAConfig(rank=2), name="a")
    with pytest.raises(ValueError, match="not in this"):
        add_lora(net, LoRAConfig(targets=["nope.layer"]), name="b")
    with pytest.raises(TypeError, match="nn.Module"):
        add_lora(object(), LoRAConfig())


def test_lora_on_a_diffusers_unet_merges_exactly():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    net = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=1, norm_num_groups=4)
    att = target_names(net, ("attention",))
    assert any(n.endswith("to_q") for n in att)
    base = {k: v.clone() for k, v in net.state_dict().items()}
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 500])
    add_lora(net, LoRAConfig(rank=2), name="a")
    randomize(net, "a", std=0.05)
    with torch.no_grad():
        want = net(x, t).sample
        with merge(net):
            assert torch.allclose(net(x, t).sample, want, atol=1e-4)
    for n, m in layers(net).items():
        assert torch.equal(m.get_base_layer().weight, base[n + ".weight"])
