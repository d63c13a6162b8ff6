"""Depth pruning (whole residual blocks by trajectory sensitivity) and attention-head pruning, with
save / reload of the pruned models (issue 11)."""

import pytest
import torch

import effdiff as ed
from effdiff import checkpoint, techniques as T
from effdiff.denoisers import Denoiser
from effdiff.models import DiT, DiTConfig, UNet, UNetConfig
from effdiff.process import Flow
from effdiff.prune.channels import groups
from effdiff.prune.depth import (DepthPruningConfig, Skip, block_macs, candidates, drop, dropped, greedy, net_macs,
                                 oneshot, undrop)
from effdiff.prune.diff_pruning import DiffPruningConfig
from effdiff.prune.heads import HeadPruningConfig, PrunedAttention, choose, heads, layers
from effdiff.prune.io import load_pruned, save_pruned


def _randomize(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net.eval().requires_grad_(False)


def _tiny_dit(zeroed=(1, 3)):
    """A random DiT whose blocks ``zeroed`` have zero gates: their residual branches are exactly 0."""
    net = _randomize(DiT(DiTConfig(hidden_size=32, depth=5, num_heads=4, mlp_ratio=2.0)))
    D = 32
    for i in zeroed:
        lin = net.blocks[i].adaLN_modulation[-1]
        for chunk in (2, 5):                         # gate_msa, gate_mlp
            lin.weight[chunk * D:(chunk + 1) * D] = 0
            lin.bias[chunk * D:(chunk + 1) * D] = 0
    den = Denoiser(net, Flow(), "velocity", num_classes=10)
    den.meta = {"model": {"image_size": 8}}
    return den


def _inputs(n=3):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.full((n,), 1.5), torch.arange(n)


def _run(den, n=4, steps=4):
    sig = ed.timesteps.get("uniform", steps, den.process)
    return T.Run(ed.sampling.randn((n, 1, 8, 8), seed=3) * sig[0].float(), sig, "ddim", torch.arange(n) % 10)


def test_dropping_a_block_with_a_zeroed_residual_branch_changes_nothing():
    den = _tiny_dit()
    x, s, y = _inputs()
    ref = den(x, s, y)
    saved = drop(den.net, ["blocks.1", "blocks.3"])
    assert torch.equal(den(x, s, y), ref) and dropped(den.net) == ["blocks.1", "blocks.3"]
    saved2 = drop(den.net, ["blocks.2"])                  # a live block does change the output
    assert not torch.allclose(den(x, s, y), ref, atol=1e-3)
    undrop(den.net, saved2)
    undrop(den.net, saved)
    # UNet: a ResBlock with an identity shortcut and one with a 1x1 projection, their last conv zeroed
    unet = _randomize(UNet(UNetConfig(model_channels=16, num_res_blocks=1, num_heads=2)))
    x, s, y = _inputs()
    with torch.no_grad():
        for name in ("input_blocks.1.0", "output_blocks.3.0"):
            unet.get_submodule(name).out_layers[2].weight.zero_()
            unet.get_submodule(name).out_layers[2].bias.zero_()
        unet.get_submodule("middle_block.1").attn.proj.weight.zero_()
        unet.get_submodule("middle_block.1").attn.proj.bias.zero_()
    ref = unet(x, s, y)
    assert "output_blocks.3.0" in candidates(unet) and not isinstance(unet.get_submodule("output_blocks.3.0").skip,
                                                                         torch.nn.Identity)
    drop(unet, ["input_blocks.1.0", "output_blocks.3.0", "middle_block.1"])
    assert torch.equal(unet(x, s, y), ref)
    with pytest.raises(TypeError, match="not a removable"):
        drop(unet, ["input_blocks.2.0"])                 # a Downsample


@pytest.mark.parametrize("criterion", ["greedy", "oneshot"])
def test_the_least_sensitive_blocks_are_chosen_and_remove_restores_exactly(criterion):
    den = _tiny_dit(zeroed=(1, 3))
    t = T.get("depth-pruning")
    cfg = t.prepare(den, DepthPruningConfig(drop=2, criterion=criterion), _run(den))
    assert set(cfg.blocks) == {"blocks.1", "blocks.3"}
    assert cfg.sensitivity["blocks.1"] == cfg.sensitivity["blocks.3"] == 0.0
    assert min(v for k, v in cfg.sensitivity.items() if k not in cfg.blocks) > 0
    x, s, y = _inputs()
    ref, originals = den(x, s, y), list(den.net.blocks)
    with t.apply(den, cfg) as h:
        assert isinstance(den.net.blocks[1], Skip) and h.stats.blocks == 2
        assert h.stats.macs_after < 0.7 * h.stats.macs_before and h.stats.params_after < h.stats.params_before
        assert torch.equal(den(x, s, y), ref)            # zero-gated blocks: exact
    cfg3 = t.prepare(den, DepthPruningConfig(drop=0.5, criterion=criterion), _run(den))   # a MAC budget
    assert {"blocks.1", "blocks.3"} <= set(cfg3.blocks) and len(cfg3.blocks) == 3
    with t.apply(den, cfg3):
        assert not torch.allclose(den(x, s, y), ref, atol=1e-4)
    assert all(a is b for a, b in zip(den.net.blocks, originals)) and torch.equal(den(x, s, y), ref)


def test_search_under_a_mac_budget():
    macs = {"a": 5.0, "b": 3.0, "c": 3.0, "d": 1.0}
    single = {"a": 1.0, "b": 0.6, "c": 0.6, "d": 0.1}
    assert oneshot(list(macs), macs, 6.0, single) == ["a", "d"]          # 1.1 beats b+c (1.2)
    assert oneshot(list(macs), macs, 2, single) == ["d", "b"]
    assert oneshot(list(macs), macs, 9.0, single) == ["a", "b", "d"]     # 9 MACs at 1.7 (a+b+c: 2.2)
    # greedy on a non-additive error: b and c together cost far more than alone
    err = lambda s: sum(single[b] for b in s) + (5.0 if {"b", "c"} <= set(s) else 0.0)
    assert greedy(list(macs), macs, 2, err) == ["d", "b"]
    assert set(greedy(list(macs), macs, 7.0, err)) == {"d", "b", "a"}
    with pytest.raises(ValueError, match="criterion"):
        DepthPruningConfig(criterion="random")
    with pytest.raises(ValueError, match="float in"):
        DepthPruningConfig(drop=1.5)


@pytest.fixture(scope="module")
def zoo_dit():
    return ed.zoo.load("digits-dit")


def test_head_pruning_keeping_every_head_is_exact_and_shapes_follow(zoo_dit):
    den = zoo_dit
    x, s, y = _inputs()
    ref = den(x, s, y)
    t = T.get("head-pruning")
    every = {n: torch.arange(m.num_heads) for n, m in layers(den.net).items()}
    with t.apply(den, HeadPruningConfig(keep=every)):
        assert all(isinstance(m, PrunedAttention) for m in layers(den.net).values())
        assert torch.equal(den(x, s, y), ref)
    keep = {n: torch.tensor([0, 2]) for n in every}
    with t.apply(den, HeadPruningConfig(keep=keep)) as h:
        for m in layers(den.net).values():
            assert (m.num_heads, m.head_dim, m.qkv.out_features, m.proj.in_features) == (2, 24, 3 * 48, 48)
        out = den(x, s, y)
        assert out.shape == ref.shape and torch.isfinite(out).all() and not torch.allclose(out, ref, atol=1e-4)
        assert h.stats.heads_after == h.stats.heads_before // 2 and h.stats.macs_after < h.stats.macs_before
        # the kept heads compute what they did: head 2 of the pruned layer is head 2 of the original
        a = den.net.blocks[0].attn
    with t.apply(den, HeadPruningConfig(keep=every)):
        full = den.net.blocks[0].attn
        tok = torch.randn(2, 16, 96)
        qkv_full = full.qkv(tok).reshape(2, 16, 3, 4, 24)
        qkv_kept = a.qkv(tok).reshape(2, 16, 3, 2, 24)
        assert torch.allclose(qkv_kept[:, :, :, 1], qkv_full[:, :, :, 2])
    assert not heads(den.net) and torch.equal(den(x, s, y), ref)
    scores = {"l0": torch.tensor([1.0, 9.0, 5.0, 0.1]), "l1": torch.tensor([0.1, 0.2, 0.3, 100.0])}
    assert {k: v.tolist() for k, v in choose(scores, 0.5).items()} == {"l0": [1, 2], "l1": [2, 3]}
    assert {k: v.tolist() for k, v in choose(scores, 0.75, "global").items()} == {"l0": [1], "l1": [3]}


def test_prepare_head_pruning_ranks_heads_by_taylor_importance(zoo_dit):
    den = zoo_dit
    cfg = T.get("head-pruning").prepare(den, HeadPruningConfig(ratio=0.5, num_samples=8, stride=200), _run(den))
    assert set(cfg.keep) == set(layers(den.net)) and all(len(k) == 2 for k in cfg.keep.values())
    assert all(p.grad is None for p in den.net.parameters())


@pytest.mark.parametrize("name", ["digits-dit", "digits-unet"])
def test_depth_and_head_pruned_models_reload_from_their_own_files(name, tmp_path):
    den = ed.zoo.load(name)
    x, s, y = _inputs()
    ref = den(x, s, y)
    blocks = ("blocks.2", "blocks.4") if name == "digits-dit" else ("middle_block.1", "output_blocks.2.0")
    att = [n for n in layers(den.net) if not n.startswith(blocks)]
    widths = {g.name: torch.arange(0, g.width, 2) for g in groups(den.net) if not g.name.startswith(blocks)}
    with T.apply(["depth-pruning", "head-pruning", "diff-pruning"], den, {
            "depth-pruning": DepthPruningConfig(blocks=blocks),
            "head-pruning": HeadPruningConfig(keep={n: torch.tensor([1, 3]) for n in layers(den.net)}),  # dropped: skipped
            "diff-pruning": DiffPruningConfig(keep=widths)}) as h:
        out = den(x, s, y)
        assert out.shape == ref.shape and torch.isfinite(out).all()
        assert h.stats["depth-pruning"].macs_after < h.stats["depth-pruning"].macs_before
        save_pruned(den, tmp_path / "m")
        macs = net_macs(den.net)
    assert torch.equal(den(x, s, y), ref)
    back = load_pruned(tmp_path / "m")
    assert torch.equal(back(x, s, y), out) and net_macs(back.net) == macs
    plan = back.meta["pruning"]
    assert plan["dropped"] == list(blocks) and plan["heads"] == {n: 2 for n in att}
    # an older plan (widths only) still loads
    tensors, meta = checkpoint.load(tmp_path / "m")
    with T.get("diff-pruning").apply(den, DiffPruningConfig(keep=widths)):
        out_w = den(x, s, y)
        save_pruned(den, tmp_path / "w")
    tensors, meta = checkpoint.load(tmp_path / "w")
    meta["pruning"] = {"widths": meta["pruning"]["widths"]}
    checkpoint.save(tmp_path / "old", tensors, {k: v for k, v in meta.items() if k != "sha256"})
    assert torch.equal(load_pruned(tmp_path / "old")(x, s, y), out_w)


def test_block_macs_add_up(zoo_dit):
    net = zoo_dit.net
    m = block_macs(net, candidates(net))
    total = net_macs(net)
    saved = drop(net, list(m))
    assert abs(total - net_macs(net) - sum(m.values())) < 1e-6 * total
    undrop(net, saved)
    assert net_macs(net) == total
