"""The video trainer's forms: full sequence, Block Diffusion, and first blocks alone."""
import pytest
import torch

from effdiff.video.presets import preset
from effdiff.video.train import VideoLoss, VideoTrainer


def trainer(tmp_path, **loss):
    base = preset("video-dit").loss
    cfg = preset("video-dit", steps=1, batch_size=2, loss={**base, "clips": 6, **loss})
    return VideoTrainer(cfg, tmp_path, progress=False)


def test_first_block_form_trains_each_block_as_a_clip_without_context(tmp_path):
    tr = trainer(tmp_path, block_fraction=0.0, first_block_fraction=1.0)
    seen = []
    forward = tr.net.forward
    tr.net.forward = lambda x, noise, y: seen.append((x.shape, noise.shape, y.clone())) or forward(x, noise, y)
    tr.net.block_diffusion = lambda *a, **k: pytest.fail("first-block form ran the block-causal form")
    x, y = tr.batch()
    loss = tr.loss_on(x, y)
    bf = tr.net.config.block_frames
    (shape, noise, labels), = seen
    assert shape == (2 * 16 // bf, x.shape[1], bf, *x.shape[3:]) and noise == (2 * 16 // bf,)
    null = tr.num_classes                       # a dropped label stays dropped for all of the clip's blocks
    assert [int(v) for v in labels.reshape(2, -1)[:, 0]] == [int(v) for v in labels.reshape(2, -1)[:, -1]]
    assert set(labels.tolist()) <= set(y.tolist()) | {null}
    assert torch.isfinite(loss) and loss.requires_grad


def test_form_shares_are_checked_and_default_off(tmp_path):
    assert VideoLoss().first_block_fraction == 0.0
    with pytest.raises(ValueError, match="first_block_fraction"):
        VideoLoss(block_fraction=0.6, first_block_fraction=0.5)
    tr = trainer(tmp_path, block_fraction=0.0, first_block_fraction=0.0)
    seen = []
    forward = tr.net.forward
    tr.net.forward = lambda x, noise, y: seen.append(x.shape) or forward(x, noise, y)
    x, y = tr.batch()
    tr.loss_on(x, y)
    assert seen == [x.shape]                    # full sequence: the clip as drawn


def test_context_noise_noises_each_context_block_to_its_own_level(tmp_path):
    """VideoLoss.context_noise c: the Block Diffusion form's context is the clip noised per block to t ~ U(0, c),
    labelled per frame with those t; off (the default), the clean clip with the clean label."""
    with pytest.raises(ValueError, match="context_noise"):
        VideoLoss(context_noise=1.0)
    x = torch.randn(3, 4, 16, 8, 8)
    ctx, clean = trainer(tmp_path / "off").context(x, 4)
    assert ctx is x and isinstance(clean, float)
    tr = trainer(tmp_path / "on", context_noise=0.2)
    ctx, labels = tr.context(x, 4)
    t = labels.double() / 1000                  # flow's noise label is 1000 t
    assert labels.shape == (3, 16) and float(t.min()) >= 0 and float(t.max()) <= 0.2 and len(set(t[0].tolist())) > 1
    assert all(len(set(t[:, 4 * k:4 * k + 4].flatten().tolist()) - set(t[:, 4 * k].tolist())) == 0 for k in range(4))
    assert not torch.equal(ctx, x) and (ctx - x).abs().max() < 0.2 * (x.abs().max() + 6)
    seen = []
    tr.vloss.block_fraction = 1.0
    bd = tr.net.block_diffusion
    tr.net.block_diffusion = lambda xt, x0, lab, cl, y: seen.append(torch.as_tensor(cl).shape) or bd(xt, x0, lab, cl, y)
    assert torch.isfinite(tr.loss_on(*tr.batch())) and seen == [(2, 16)]


def test_two_block_share_trains_the_block_diffusion_form_on_two_block_clips(tmp_path):
    """two_block_share 1: every Block Diffusion step runs on each clip cut into clips of two blocks (a block without
    context and one with a single block of it), labels following their clip; 0 (the default): the whole clip."""
    assert VideoLoss().two_block_share == 0.0
    with pytest.raises(ValueError, match="two_block_share"):
        VideoLoss(two_block_share=1.5)
    for share, shape in ((1.0, (2 * 2, 8)), (0.0, (2, 16))):
        tr = trainer(tmp_path / str(share), block_fraction=1.0, two_block_share=share)
        seen = []
        bd = tr.net.block_diffusion
        tr.net.block_diffusion = lambda xt, x0, lab, cl, y: seen.append((xt.shape, lab.shape, y)) or bd(xt, x0, lab,
                                                                                                           cl, y)
        x, y = tr.batch()
        assert torch.isfinite(tr.loss_on(x, y))
        (xs, ls, ys), = seen
        assert (xs[0], xs[2]) == shape and tuple(ls) == shape and len(ys) == shape[0]
        if share:
            assert ys.reshape(2, 2)[:, 0].tolist() == ys.reshape(2, 2)[:, 1].tolist()


def test_sparse_training_runs_both_forms_under_the_fixed_pattern(tmp_path, request):
    """--attention sliding-tile:window=W or sparse-videogen:...: every training forward (full sequence and Block
    Diffusion) attends through the pattern, with gradients; a pattern picked once per sampling run (adaspa) is
    refused."""
    from effdiff.video import sparse
    from effdiff.video.train import sparse_training
    request.addfinalizer(sparse.unregister)                 # sparse_training registers them; restore the registry
    for block, use in ((0.0, "sliding-tile:window=1"), (1.0, "sliding-tile:window=1"),
                       (1.0, "sliding-tile:window=0,far_tokens=1"), (1.0, "sliding-tile:window=0,dense_heads=0"),
                       (0.0, "sparse-videogen:window=1"), (1.0, "sparse-videogen:window=0")):
        tr = trainer(tmp_path / f"{block}{use}", block_fraction=block)
        handle = sparse_training(tr, use)
        x, y = tr.batch()
        loss = tr.loss_on(x, y)
        loss.backward()
        st = handle.stats
        assert st.calls == tr.net.config.depth and 0 < st.macs - st.profile_macs < st.dense_macs
        assert st.profile_macs == 0 if use.startswith("sliding") else st.searches == st.calls   # profiled every call
        assert torch.isfinite(loss)
        handle.remove()
    with pytest.raises(ValueError, match="once per sampling run"):
        sparse_training(trainer(tmp_path / "a"), "adaspa:density=0.5")


def test_distillation_from_a_dense_teacher_matches_outputs_and_attention(tmp_path):
    """VideoLoss.distill / distill_attention (Sliding Tile Attention's fine-tuning losses): the student's velocity and
    each attention layer's output against a frozen dense teacher on the same inputs. A student equal to the teacher has
    zero loss in both forms; under a sparse pattern it has a positive, differentiable one; the teacher stays dense."""
    from pathlib import Path
    import effdiff
    from effdiff.video.attention import dense_attention
    from effdiff.video.sparse import attention_modules, unregister
    from effdiff.video.train import attention_outputs, init_from, sparse_training
    zoo = Path(effdiff.__file__).parent / "zoo" / "weights" / "video-dit"
    with pytest.raises(ValueError, match="loss weights"):
        VideoLoss(distill=-1.0)
    with pytest.raises(ValueError, match="loss weights"):
        VideoLoss(data_weight=0.0)
    tr = trainer(tmp_path, distill=1.0, distill_attention=1.0, data_weight=0.0)
    x, y = tr.batch()
    with pytest.raises(RuntimeError, match="teacher"):
        tr.loss_on(x, y)
    init_from(tr, zoo)
    tr.set_teacher(zoo)
    with attention_outputs(tr.net) as outs:
        tr.net(x, torch.full((2,), 500.0), y)
    assert len(outs) == tr.net.config.depth and outs[0].shape[:2] == (2, 16 * tr.net.tokens_per_frame)
    for form in (0.0, 1.0):                                   # full sequence, Block Diffusion
        tr.vloss.block_fraction = form
        assert tr.loss_on(x, y).item() == 0.0
    try:
        sparse_training(tr, "sliding-tile:window=0")
        loss = tr.loss_on(x, y)
        assert loss.item() > 0 and loss.requires_grad
        assert all(m.processor is dense_attention for m in attention_modules(tr.teacher))
        assert not any(p.requires_grad for p in tr.teacher.parameters())
    finally:
        unregister()
