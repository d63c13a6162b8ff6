"""Diff-Pruning: importance over early timesteps, dependency-consistent shapes, save / reload (issue 11)."""
import pytest
import torch

import effdiff as ed
from effdiff import techniques as T
from effdiff.metrics import macs_per_sample
from effdiff.prune import (DiffPruningConfig, finetune, groups, load_pruned, prepare_diff_pruning, save_pruned,
                           taylor_gradients)


@pytest.fixture(scope="module", params=["digits-unet", "digits-dit"])
def pruned(request):
    den = ed.zoo.load(request.param)
    cfg = prepare_diff_pruning(den, DiffPruningConfig(ratio=0.5, num_samples=8, stride=100))
    return den, cfg


def _inputs():
    return torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.full((3,), 1.5), torch.arange(3)


def test_pruned_shapes_follow_the_dependency_graph_and_remove_restores(pruned):
    den, cfg = pruned
    x, s, y = _inputs()
    ref = den(x, s, y)
    macs0 = macs_per_sample(lambda a, b: den(a, s[:len(a)], b), x, y)
    widths0 = {g.name: g.width for g in groups(den.net)}
    with T.get("diff-pruning").apply(den, cfg) as h:
        out = den(x, s, y)                                 # every skip / residual still fits
        assert out.shape == ref.shape and torch.isfinite(out).all()
        for g in groups(den.net):
            assert g.width == len(cfg.keep[g.name]) and g.width % g.unit == 0 and g.width < widths0[g.name]
        assert macs_per_sample(lambda a, b: den(a, s[:len(a)], b), x, y) < 0.8 * macs0
        assert h.stats.params_after < h.stats.params_before
    assert torch.equal(den(x, s, y), ref)


def test_pruned_model_reloads_from_its_own_files(pruned, tmp_path):
    den, cfg = pruned
    x, s, y = _inputs()
    with T.get("diff-pruning").apply(den, cfg):
        finetune(den, steps=2, batch=8)
        out = den(x, s, y)
        save_pruned(den, tmp_path / "m")
    back = load_pruned(tmp_path / "m")
    assert torch.equal(back(x, s, y), out)
    assert back.meta["pruning"]["widths"] == {g.name: g.width for g in groups(back.net)}


def test_taylor_accumulation_stops_at_the_threshold():
    den = ed.zoo.load("digits-dit")
    x0 = ed.data.digits("train")[0][:8]
    info = taylor_gradients(den, x0, torch.arange(8) % 10, thr=0.5, stride=50)
    assert info["losses"][-1] < 0.5 * max(info["losses"]) and all(l >= 0.5 * max(info["losses"][:i + 1])
                                                                   for i, l in enumerate(info["losses"][:-1]))
    assert den.net.blocks[0].mlp.fc1.weight.grad is not None
    with pytest.raises(ValueError, match="ratio"):
        DiffPruningConfig(ratio=1.0)


def test_finetune_with_a_teacher_distills_its_outputs():
    """distill=0 is the plain denoising fine-tune (same draws, same losses); distill=1 regresses the
    network's outputs onto the teacher's on the same noisy inputs (a copy of the teacher has zero loss)."""
    teacher = ed.zoo.load("digits-dit")
    a, b = ed.zoo.load("digits-dit"), ed.zoo.load("digits-dit")
    plain = finetune(a, steps=3, batch=8)
    zero = finetune(b, steps=3, batch=8, teacher=teacher, distill=0.0)
    assert plain == pytest.approx(zero, rel=1e-5)
    copy = ed.zoo.load("digits-dit")
    assert finetune(copy, steps=2, batch=8, teacher=teacher, distill=1.0) == pytest.approx([0.0, 0.0], abs=1e-8)
    with pytest.raises(ValueError, match="distill"):
        finetune(copy, steps=1, teacher=teacher, distill=2.0)
