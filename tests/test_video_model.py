"""The video DiT: Block Diffusion's training form equals KV-cached streaming (float64), shapes."""
from unittest.mock import patch

import pytest
import torch

from effdiff.video.block_causal import KVCache, bd_mask
from effdiff.video.model import VideoDiT, VideoDiTConfig


def tiny(window=0, **kw):
    torch.manual_seed(0)
    net = VideoDiT(VideoDiTConfig(hidden_size=32, depth=2, num_heads=2, block_frames=2, window_blocks=window, **kw))
    for p in net.parameters():          # adaLN-Zero starts as the identity: give every weight a value
        torch.nn.init.normal_(p, std=0.2)
    return net.double().eval()


def small_stream(frames: int = 6, seed: int = 0, labels=(1, 2)):
    """(denoiser, sigmas, noise, labels) of a tiny float64 flow video DiT (2-frame blocks, window 1)."""
    from effdiff.denoisers import Denoiser
    from effdiff.process import Flow
    from effdiff.video.sampling import clip_noise
    net = tiny(1)
    sig = torch.tensor([4.0, 1.0, 0.25, 0.0], dtype=torch.float64)
    return (Denoiser(net, Flow(), "velocity", 10), sig, clip_noise(2, (4, frames, 8, 8), seed=seed).double(),
            torch.tensor(labels))


@pytest.mark.parametrize("window", [0, 1, 2])
def test_kv_cache_streaming_equals_masked_recompute(window):
    net = tiny(window)
    B, T = 2, 8
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(B, 4, T, 8, 8, generator=g, dtype=torch.float64)
    xt = torch.randn(B, 4, T, 8, 8, generator=g, dtype=torch.float64)
    block_labels = torch.rand(B, T // 2, generator=g, dtype=torch.float64) * 1000
    frame_labels = block_labels.repeat_interleave(2, 1)
    y = torch.tensor([3, 7])
    with torch.no_grad():
        full = net.block_diffusion(xt, x0, frame_labels, 0.0, y)
        cache = KVCache(2, 2, window)
        for b in range(T // 2):
            s = slice(2 * b, 2 * b + 2)
            out = net.stream_step(xt[:, :, s], block_labels[:, b], y, cache, 2 * b)
            assert torch.allclose(out, full[:, :, s], atol=1e-10, rtol=0), b
            net.commit(x0[:, :, s], 0.0, y, cache, 2 * b)
    assert cache.writes == T // 2
    if window:
        assert len(cache) == window * 2          # frames kept: only what a next block could see


def test_block_causal_output_ignores_the_future():
    """Changing later blocks leaves a block's output unchanged; a block outside the window still
    reaches it through the keys of the blocks in between (the receptive field grows with depth)."""
    net = tiny(1)
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(1, 4, 8, 8, 8, generator=g, dtype=torch.float64)
    xt = torch.randn(1, 4, 8, 8, 8, generator=g, dtype=torch.float64)
    lab = torch.full((1, 8), 500.0, dtype=torch.float64)
    with torch.no_grad():
        a = net.block_diffusion(xt, x0, lab, 0.0)
        x0b, xtb = x0.clone(), xt.clone()
        x0b[:, :, 6:] += 1.0                  # the future (clean and noisy) of block 2
        xtb[:, :, 6:] += 1.0
        b = net.block_diffusion(xtb, x0b, lab, 0.0)
        x0c = x0.clone()
        x0c[:, :, 0:2] += 1.0                 # block 0: outside block 2's window of 1
        c = net.block_diffusion(xt, x0c, lab, 0.0)
    assert torch.allclose(a[:, :, :6], b[:, :, :6], atol=1e-12)
    assert not torch.allclose(a[:, :, 6:], b[:, :, 6:])
    assert torch.allclose(a[:, :, 0:2], c[:, :, 0:2], atol=1e-12)   # the noisy block 0 never sees clean block 0
    assert not torch.allclose(a[:, :, 4:6], c[:, :, 4:6])           # through clean block 1's keys


def test_mask_shape_and_rows():
    m = bd_mask(4, 2, 0)
    assert m.shape == (8, 8)
    assert m[:4, 4:].tolist() == [[False] * 4] * 2 + [[True, True, False, False]] * 2
    assert not m[4:, :4].any()


def test_full_sequence_shapes_and_errors():
    net = tiny()
    x = torch.randn(3, 4, 5, 8, 8, dtype=torch.float64)
    assert net(x, torch.ones(3) * 10, torch.tensor([1, 2, 10])).shape == x.shape
    with pytest.raises(ValueError, match="video DiT needs"):
        net(torch.randn(3, 4, 8, 8, dtype=torch.float64), 1.0)


def blockwise_reference(den, sig, noise, y, context=lambda zb, b: zb, clean=0.0):
    """The 6-frame stream recomputed under the training form: block b (Euler) denoised by ``block_diffusion``
    against the prefix [context(block 0, 0), ..., context(block b-1, b-1)] with the context's noise label(s)
    ``clean``."""
    from effdiff.sampling import sample
    net, ctx, out = den.net, [], []
    for b in range(3):
        s = slice(2 * b, 2 * b + 2)

        def D(x, sigma, cond=None, b=b):
            xt = torch.zeros_like(noise)
            xt[:, :, 2 * b:2 * b + 2] = x
            x0 = torch.cat(ctx + [torch.zeros_like(noise[:, :, 2 * b:])], 2)
            sig_b = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1, 1, 1, 1)
            a, t = 1 / (1 + sig_b), sig_b / (1 + sig_b)          # flow: x_n = a x = (1-t) x0 + t eps
            lab = (1000 * t).reshape(-1, 1).expand(2, 6)
            v = net.block_diffusion(xt * a, x0, lab, clean, cond)[:, :, s]
            return a * x - t * v                                   # x0 = x_n - t v
        out.append(sample(D, noise[:, :, s] * sig[0], sig, "euler", cond=y))
        ctx.append(context(out[-1], b))
    return torch.cat(out, 2)


def test_stream_generation_equals_blockwise_recompute():
    """generate_stream (KV cache) gives the clip that denoising each block against the recomputed
    clean prefix under the training mask gives (float64, Euler, 3 steps)."""
    from effdiff.video.sampling import generate_full, generate_stream
    den, sig, noise, y = small_stream()
    with torch.no_grad():
        z = generate_stream(den, noise, sig, "euler", y)
        assert torch.allclose(z, blockwise_reference(den, sig, noise, y), atol=1e-9)
        full = generate_full(den, noise, sig, "euler", y)
    assert full.shape == z.shape and not torch.allclose(full, z)


def test_guided_streaming_gives_each_branch_its_own_context():
    """Classifier-free guidance batches [x; x] with [cond; null]: in a stream each branch attends to the
    earlier blocks committed under its own label (a dropped label is dropped for the whole sequence in
    training), so a guided streamed block is u + w (c - u) of the conditional call against the cache
    committed with the labels and the unconditional call against the cache committed with the null label
    (float64); the conditional branch alone reads the paired cache's first half; a guided stream runs."""
    from effdiff.denoisers import CFG, Denoiser
    from effdiff.process import Flow
    from effdiff.video.sampling import BlockNet, clip_noise, generate_stream
    net = tiny(1)
    x0 = torch.randn(2, 4, 2, 8, 8, dtype=torch.float64)
    y, null = torch.tensor([1, 2]), torch.full((2,), 10)
    caches = {k: KVCache(2, 2, 1) for k in ("c", "u", "pair")}
    with torch.no_grad():
        net.commit(x0, 0.0, y, caches["c"], 0)
        net.commit(x0, 0.0, null, caches["u"], 0)
        net.commit(torch.cat([x0, x0]), 0.0, torch.cat([y, null]), caches["pair"], 0)
        den = {k: Denoiser(BlockNet(net, c, 2), Flow(), "velocity", 10) for k, c in caches.items()}
        x, s = torch.randn(2, 4, 2, 8, 8, dtype=torch.float64), torch.full((2,), 0.7, dtype=torch.float64)
        c, u = den["c"](x, s, y), den["u"](x, s, null)
        assert torch.allclose(CFG(den["pair"], 3.0)(x, s, y), u + 3.0 * (c - u), atol=1e-10)
        assert torch.allclose(den["pair"](x, s, y), c, atol=1e-12)                 # conditional branch alone
        assert not torch.allclose(den["c"](x, s, null), u)                         # the context matters
        z = generate_stream(Denoiser(net, Flow(), "velocity", 10), clip_noise(2, (4, 6, 8, 8), 0).double(),
                            torch.tensor([4.0, 1.0, 0.0], dtype=torch.float64), "euler", y, scale=3.0)
    assert z.shape == (2, 4, 6, 8, 8) and torch.isfinite(z).all()
    with pytest.raises(ValueError, match="cannot attend to a cache of batch 2"):
        caches["c"].past(2, 3)
    with pytest.raises(ValueError, match="cannot attend to a cache of batch 4"):
        caches["pair"].past(2, 1)


def test_history_guidance_runs_the_unconditional_branch_without_context():
    """history_guidance 1: a guided streamed block is u + w (c - u) of the conditional call against the cache
    committed once with the labels and the null-label call against no cache at all (a first block); one commit
    per block; the first block is the plain guided one (float64)."""
    from effdiff.denoisers import CFG, Denoiser
    from effdiff.sampling import sample
    from effdiff.video.sampling import BlockNet, generate_stream
    den, sig, noise, y = small_stream()
    net, null, w = den.net, torch.full((2,), 10), 3.0
    with torch.no_grad():
        z = generate_stream(den, noise, sig, "euler", y, scale=w, history_guidance=1)
        plain = generate_stream(den, noise, sig, "euler", y, scale=w)
        cache = KVCache(2, 2, 1)
        for b in range(3):
            c = Denoiser(BlockNet(net, cache, 2 * b), den.process, den.prediction, 10)
            u = Denoiser(BlockNet(net, KVCache(2, 2, 1), 2 * b), den.process, den.prediction, 10)
            D = lambda x, sigma, cond, c=c, u=u: u(x, sigma, null) + w * (c(x, sigma, cond) - u(x, sigma, null))  # noqa
            zb = sample(D, noise[:, :, 2 * b:2 * b + 2] * sig[0], sig, "euler", cond=y)
            assert torch.allclose(z[:, :, 2 * b:2 * b + 2], zb, atol=1e-9), b
            net.commit(zb, 0.0, y, cache, 2 * b)
        hg = Denoiser(BlockNet(net, cache, 6, free_second_half=True), den.process, den.prediction, 10)
        x, s = torch.randn(2, 4, 2, 8, 8, dtype=torch.float64), torch.full((2,), 0.7, dtype=torch.float64)
        ref = Denoiser(BlockNet(net, cache, 6), den.process, den.prediction, 10)
        assert torch.allclose(hg(x, s, y), ref(x, s, y), atol=1e-12)   # the conditional branch alone keeps the context
        assert not torch.allclose(CFG(hg, w)(x, s, y), CFG(ref, w)(x, s, y))
    assert torch.equal(z[:, :, :2], plain[:, :, :2]) and not torch.allclose(z[:, :, 2:], plain[:, :, 2:])
    with pytest.raises(ValueError, match="history_guidance"):
        generate_stream(den, noise, sig, "euler", y, scale=w, history_guidance=2)


def test_overlap_second_widens_only_the_second_block():
    """overlap_second O2: the second block is sampled with O2 next frames (a stream step over block_frames + O2
    frames against the first block's cache), the later blocks with ``overlap``; 0 leaves the stream as it was."""
    from effdiff.denoisers import Denoiser
    from effdiff.sampling import sample
    from effdiff.video.sampling import BlockNet, generate_stream
    den, sig, noise, y = small_stream(frames=8)
    net = den.net
    with torch.no_grad():
        z = generate_stream(den, noise, sig, "euler", y, overlap=1, overlap_second=3)
        o1 = generate_stream(den, noise, sig, "euler", y, overlap=1)
        cache = KVCache(2, 2, 1)
        net.commit(z[:, :, :2], 0.0, y, cache, 0)
        b1 = sample(Denoiser(BlockNet(net, cache, 2), den.process, den.prediction, 10), noise[:, :, 2:7] * sig[0],
                    sig, "euler", cond=y)
        net.commit(z[:, :, 2:4], 0.0, y, cache, 2)
        b2 = sample(Denoiser(BlockNet(net, cache, 4), den.process, den.prediction, 10), noise[:, :, 4:7] * sig[0],
                    sig, "euler", cond=y)
        assert torch.equal(generate_stream(den, noise, sig, "euler", y, overlap=1, overlap_second=0), o1)
    assert torch.allclose(z[:, :, 2:4], b1[:, :, :2], atol=1e-12) and torch.allclose(z[:, :, 4:6], b2[:, :, :2], atol=1e-12)
    assert torch.equal(z[:, :, :2], o1[:, :, :2]) and not torch.allclose(z[:, :, 2:4], o1[:, :, 2:4])
    with pytest.raises(ValueError, match="overlap_second"):
        generate_stream(den, noise, sig, "euler", y, overlap_second=-1)


def test_scale_second_guides_only_the_second_block_harder():
    """scale_second w2: the second block is the guided sample at w2 against the first block's paired cache; the first
    block is the plain stream's; w2 = 0 or the stream's own scale leaves the stream as it was; no guidance: an error."""
    from effdiff.denoisers import Denoiser, guided
    from effdiff.sampling import sample
    from effdiff.video.sampling import BlockNet, generate_stream
    den, sig, noise, y = small_stream(frames=6)
    net, w = den.net, 2.0
    with torch.no_grad():
        z = generate_stream(den, noise, sig, "euler", y, scale=w, scale_second=4.0)
        plain = generate_stream(den, noise, sig, "euler", y, scale=w)
        assert torch.equal(generate_stream(den, noise, sig, "euler", y, scale=w, scale_second=w), plain)
        assert torch.equal(generate_stream(den, noise, sig, "euler", y, scale=w, scale_second=0), plain)
        cache = KVCache(2, 2, 1)
        bden = Denoiser(BlockNet(net, cache, 2), den.process, den.prediction, 10)
        net.commit(torch.cat([z[:, :, :2]] * 2), 0.0, torch.cat([bden.labels(y, 2, z.device), bden.labels(None, 2, z.device)]),
                   cache, 0)
        b2 = sample(guided(bden, 4.0), noise[:, :, 2:4] * sig[0], sig, "euler", cond=y)
    assert torch.equal(z[:, :, :2], plain[:, :, :2]) and torch.allclose(z[:, :, 2:4], b2, atol=1e-12)
    assert not torch.allclose(z[:, :, 2:4], plain[:, :, 2:4])
    with pytest.raises(ValueError, match="needs guidance"):
        generate_stream(den, noise, sig, "euler", y, scale_second=4.0)
    with pytest.raises(ValueError, match="scale_second"):
        generate_stream(den, noise, sig, "euler", y, scale=w, scale_second=-1.0)


def test_scale_blocks_guides_every_block_the_stream_samples_and_not_the_lookahead():
    """scale_blocks w: the lookahead solve's kept blocks keep the stream's scale; each later block is the guided
    sample at w against the paired cache of the blocks before it; w = 0 or the stream's own scale leaves the stream
    as it was; scale_second still sets the second block; no guidance or w < 0: an error."""
    from effdiff.denoisers import Denoiser, guided
    from effdiff.sampling import sample
    from effdiff.video.sampling import BlockNet, generate_stream
    den, sig, noise, y = small_stream(frames=6)
    net, w, opt = den.net, 2.0, dict(lookahead=4, lookahead_blocks=2)
    with torch.no_grad():
        plain = generate_stream(den, noise, sig, "euler", y, scale=w, **opt)
        z = generate_stream(den, noise, sig, "euler", y, scale=w, scale_blocks=4.0, **opt)
        for same in (w, 0):
            assert torch.equal(generate_stream(den, noise, sig, "euler", y, scale=w, scale_blocks=same, **opt), plain)
        cache = KVCache(2, 2, 1)
        bden = Denoiser(BlockNet(net, cache, 4), den.process, den.prediction, 10)
        paired = torch.cat([bden.labels(y, 2, z.device), bden.labels(None, 2, z.device)])
        for start in (0, 2):                      # block 2's keys in the deeper layers attend to block 1
            net.commit(torch.cat([z[:, :, start:start + 2]] * 2), 0.0, paired, cache, start)
        b3 = sample(guided(bden, 4.0), noise[:, :, 4:6] * sig[0], sig, "euler", cond=y)
        assert torch.equal(z[:, :, :4], plain[:, :, :4]) and torch.allclose(z[:, :, 4:6], b3, atol=1e-12)
        assert not torch.allclose(z[:, :, 4:6], plain[:, :, 4:6])
        both = generate_stream(den, noise, sig, "euler", y, scale=w, scale_blocks=4.0, scale_second=3.0)
        second = generate_stream(den, noise, sig, "euler", y, scale=w, scale_second=3.0)
        assert not torch.equal(both[:, :, :2], second[:, :, :2])        # no lookahead: block 1 is the stream's own
        assert torch.equal(generate_stream(den, noise, sig, "euler", y, scale=w, scale_blocks=4.0)[:, :, :2],
                           both[:, :, :2])
    with pytest.raises(ValueError, match="needs guidance"):
        generate_stream(den, noise, sig, "euler", y, scale_blocks=4.0)
    with pytest.raises(ValueError, match="scale_blocks"):
        generate_stream(den, noise, sig, "euler", y, scale=w, scale_blocks=-1.0)


def test_stream_lookahead_takes_the_first_block_from_a_full_sequence_solve():
    """lookahead L: the first block is the first frames of a full-sequence solve of the first L frames (same
    noise), the later blocks stream on as usual against it; L <= block_frames is the plain stream."""
    from effdiff.video.sampling import generate_full, generate_stream
    den, sig, noise, y = small_stream()
    blocks = []
    with torch.no_grad():
        z = generate_stream(den, noise, sig, "euler", y, lookahead=4, on_block=lambda s, zb: blocks.append(s))
        full4 = generate_full(den, noise[:, :, :4], sig, "euler", y)
        plain = generate_stream(den, noise, sig, "euler", y)
        assert torch.equal(generate_stream(den, noise, sig, "euler", y, lookahead=2), plain)
        z99 = generate_stream(den, noise, sig, "euler", y, lookahead=99)      # clamped to the clip: all 6 frames
        full6 = generate_full(den, noise, sig, "euler", y)
    assert blocks == [0, 2, 4] and z.shape == plain.shape
    assert torch.allclose(z[:, :, :2], full4[:, :, :2], atol=1e-12) and not torch.allclose(z[:, :, :2], plain[:, :, :2])
    assert torch.allclose(z99[:, :, :2], full6[:, :, :2], atol=1e-12)
    assert not torch.allclose(z[:, :, 2:], plain[:, :, 2:])          # later blocks attend to the new first block
    with pytest.raises(ValueError, match="lookahead"):
        generate_stream(den, noise, sig, "euler", y, lookahead=-1)
    with pytest.raises(ValueError, match="lookahead_past"):
        generate_stream(den, noise, sig, "euler", y, lookahead_past=2)          # a past without a lookahead


def test_stream_lookahead_blocks_keeps_the_solves_first_blocks():
    """lookahead_blocks K: the first K blocks are the lookahead solve's (exactly; the later blocks stream on
    against them); K = 0 or 1 is the plain lookahead, K beyond the solve keeps the whole solve (a solve of the whole
    clip is the full sequence), and K > 1 needs a lookahead."""
    from effdiff.video.sampling import generate_full, generate_stream
    den, sig, noise, y = small_stream(frames=8, seed=2, labels=(1, 5))
    blocks = []
    with torch.no_grad():
        z = generate_stream(den, noise, sig, "euler", y, lookahead=6, lookahead_blocks=2,
                            on_block=lambda s, zb: blocks.append(s))
        solve = generate_full(den, noise[:, :, :6], sig, "euler", y)
        one = generate_stream(den, noise, sig, "euler", y, lookahead=6)
        assert torch.equal(generate_stream(den, noise, sig, "euler", y, lookahead=6, lookahead_blocks=1), one)
        whole = generate_stream(den, noise, sig, "euler", y, lookahead=8, lookahead_blocks=9)
        full = generate_full(den, noise, sig, "euler", y)
        capped = generate_stream(den, noise, sig, "euler", y, lookahead=6, lookahead_blocks=9)   # 3 of the 4 blocks
    assert blocks == [0, 2, 4, 6] and z.shape == noise.shape
    assert torch.allclose(z[:, :, :4], solve[:, :, :4], atol=1e-12) and torch.equal(z[:, :, :2], one[:, :, :2])
    assert not torch.allclose(z[:, :, 2:4], one[:, :, 2:4]) and not torch.allclose(z[:, :, 4:], one[:, :, 4:])
    assert torch.allclose(whole, full, atol=1e-12) and torch.allclose(capped[:, :, :6], solve, atol=1e-12)
    with pytest.raises(ValueError, match="lookahead_blocks"):
        generate_stream(den, noise, sig, "euler", y, lookahead_blocks=2)
    with pytest.raises(ValueError, match="lookahead_blocks"):
        generate_stream(den, noise, sig, "euler", y, lookahead=6, lookahead_blocks=-1)


def test_stream_lookahead_steps_solves_the_lookahead_on_a_resampled_grid():
    """lookahead_steps S: the kept blocks are those of the lookahead solve on the grid resampled to S steps; the
    later blocks keep the stream's grid; S equal to the grid's steps is the default; S needs a lookahead."""
    from effdiff.timesteps import karras, resample
    from effdiff.video.sampling import generate_full, generate_stream
    den, _, noise, y = small_stream(frames=8, seed=3, labels=(4, 7))
    sig = karras(4, 0.05, 4.0)
    with torch.no_grad():
        z = generate_stream(den, noise, sig, "euler", y, lookahead=6, lookahead_blocks=2, lookahead_steps=2)
        solve = generate_full(den, noise[:, :, :6], karras(2, 0.05, 4.0), "euler", y)
        default = generate_stream(den, noise, sig, "euler", y, lookahead=6, lookahead_blocks=2)
        same = generate_stream(den, noise, sig, "euler", y, lookahead=6, lookahead_blocks=2, lookahead_steps=4)
        one = generate_stream(den, noise[:, :, :4], sig, "euler", y, lookahead=4, lookahead_blocks=2,
                              lookahead_steps=1)
    assert torch.allclose(z[:, :, :4], solve[:, :, :4], atol=1e-12)
    assert not torch.allclose(z[:, :, :4], default[:, :, :4], atol=1e-6)
    assert not torch.allclose(z[:, :, 4:], default[:, :, 4:], atol=1e-6)    # later blocks attend to the new context
    assert torch.equal(same, default)
    assert torch.allclose(one, generate_full(den, noise[:, :, :4], resample(sig, 1), "euler", y), atol=1e-12)
    with pytest.raises(ValueError, match="lookahead_steps"):
        generate_stream(den, noise, sig, "euler", y, lookahead_steps=2)
    with pytest.raises(ValueError, match="lookahead_steps"):
        generate_stream(den, noise, sig, "euler", y, lookahead=6, lookahead_steps=-1)


@pytest.mark.parametrize("solver", ["euler", "dpmpp-2m", "heun"])
def test_known_frames_end_on_the_known_frames(solver):
    """KnownFrames: started from x0 + σ0 ε on the known frames, a deterministic solver ends on x0 there (the
    estimate is replaced, the step is affine in it); the other frames differ from an unconstrained solve."""
    from effdiff.sampling import sample
    from effdiff.timesteps import karras
    from effdiff.video.sampling import KnownFrames
    den, _, noise, y = small_stream(frames=4, seed=5, labels=(2, 3))
    sig = karras(5, 0.05, 4.0)
    known = torch.randn(2, 4, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = noise * sig[0]
    x[:, :, :1] += known
    with torch.no_grad():
        z = sample(KnownFrames(den, known), x, sig, solver, cond=y)
        free = sample(den, noise * sig[0], sig, solver, cond=y)
    torch.testing.assert_close(z[:, :, :1], known, rtol=0, atol=1e-10)
    assert not torch.allclose(z[:, :, 1:], free[:, :, 1:], atol=1e-4)


def test_stream_carry_keeps_the_previous_solves_next_frame():
    """carry 1: the first streamed block starts with the lookahead solve's frame after its kept blocks, a later
    block with the previous block's first overlap frame (exactly); carry 0 is the default; carry needs an overlap,
    and a model's carry default is dropped by a call that turns the overlap off."""
    from effdiff.video.sampling import generate_full, generate_stream
    den, sig, noise, y = small_stream(frames=10, seed=4, labels=(3, 8))
    outs = []

    def grab(start, zb):
        outs.append((start, zb.clone()))
    with torch.no_grad():
        z = generate_stream(den, noise, sig, "euler", y, lookahead=6, lookahead_blocks=2, overlap=2, carry=1)
        solve = generate_full(den, noise[:, :, :6], sig, "euler", y)
        plain = generate_stream(den, noise, sig, "euler", y, lookahead=6, lookahead_blocks=2, overlap=2)
        assert torch.equal(generate_stream(den, noise, sig, "euler", y, lookahead=6, lookahead_blocks=2, overlap=2,
                                           carry=0), plain)
        z1 = generate_stream(den, noise, sig, "euler", y, overlap=1, carry=1, on_block=grab)
        o1 = generate_stream(den, noise, sig, "euler", y, overlap=1)
    assert torch.allclose(z[:, :, :4], solve[:, :, :4], atol=1e-12)
    assert torch.equal(z[:, :, 4:5], solve[:, :, 4:5])                    # the solve's frame after its kept blocks
    assert not torch.allclose(z[:, :, 4:], plain[:, :, 4:], atol=1e-6)
    assert [s for s, _ in outs] == [0, 2, 4, 6, 8]
    assert torch.equal(z1[:, :, :4], o1[:, :, :4])        # block 0 has no overlap frame: block 1 is sampled anew
    assert not torch.allclose(z1[:, :, 4:], o1[:, :, 4:], atol=1e-6)
    with pytest.raises(ValueError, match="needs an overlap"):
        generate_stream(den, noise, sig, "euler", y, carry=1)
    with pytest.raises(ValueError, match="carry"):
        generate_stream(den, noise, sig, "euler", y, overlap=1, carry=2)
    from effdiff.video.sampling import VideoModel
    vm = VideoModel(den, None, {}, {"overlap": 1, "carry": 1})
    assert vm.stream_kwargs(overlap=0) == {"overlap": 0} and vm.stream_kwargs() == {"overlap": 1, "carry": 1}


def test_stream_lookahead_past_takes_the_first_block_from_inside_the_solve():
    """lookahead L with past P: the solve covers P past frames (noise of the clip's frames L-P .. L-1, unused by
    that solve) and the clip's first L-P frames; the first block is its frames P .. P + block_frames."""
    from effdiff.video.sampling import generate_full, generate_stream
    den, sig, noise, y = small_stream(frames=8, seed=1, labels=(3, 4))
    with torch.no_grad():
        z = generate_stream(den, noise, sig, "euler", y, lookahead=6, lookahead_past=2)
        solve = generate_full(den, torch.cat([noise[:, :, 4:6], noise[:, :, :4]], 2), sig, "euler", y)
        same = generate_stream(den, noise, sig, "euler", y, lookahead=6, lookahead_past=0)
        capped = generate_stream(den, noise, sig, "euler", y, lookahead=6, lookahead_past=9)    # at most L - block
        solve4 = generate_full(den, torch.cat([noise[:, :, 2:6], noise[:, :, :2]], 2), sig, "euler", y)
    assert torch.allclose(z[:, :, :2], solve[:, :, 2:4], atol=1e-12) and not torch.allclose(z[:, :, :2], same[:, :, :2])
    assert torch.allclose(capped[:, :, :2], solve4[:, :, 4:6], atol=1e-12) and z.shape == noise.shape


def test_stream_context_noise_commits_each_block_noised_as_in_training():
    """context_noise s: each finished block enters the cache as (1 - s) block + s eps (eps: the block's starting
    noise under a fixed permutation) with the noise label of flow time s, which is what the Block Diffusion form
    sees with a context at t = s (float64, exact); the first block is unchanged, the later ones are not."""
    from effdiff.video.sampling import generate_stream
    den, sig, noise, y = small_stream()
    s_ctx = 0.1
    noised = lambda zb, b: (1 - s_ctx) * zb + s_ctx * noise[:, :, 2 * b:2 * b + 2].flip(2, 3, 4).roll(1, 1)  # noqa
    with torch.no_grad():
        z = generate_stream(den, noise, sig, "euler", y, context_noise=s_ctx)
        plain = generate_stream(den, noise, sig, "euler", y)
        ref = blockwise_reference(den, sig, noise, y, noised, torch.full((2, 6), 1000 * s_ctx, dtype=torch.float64))
    assert torch.allclose(z, ref, atol=1e-9)
    assert torch.equal(z[:, :, :2], plain[:, :, :2]) and not torch.allclose(z[:, :, 2:], plain[:, :, 2:])
    for bad in (-0.1, 1.0, "0.1"):
        with pytest.raises(ValueError, match="context_noise"):
            generate_stream(den, noise, sig, "euler", y, context_noise=bad)
    from effdiff.denoisers import Denoiser
    from effdiff.process import EDM
    with pytest.raises(ValueError, match="flow time"):
        generate_stream(Denoiser(den.net, EDM(), "x0", 10), noise, sig, "euler", y, context_noise=0.1)


def test_stream_overlap_samples_each_later_block_with_its_next_frames():
    """overlap O: a later block is the first block_frames of a stream step over block_frames + O frames (the next
    frames' own noise) against the same cache; the first and the last block are unchanged in kind."""
    from effdiff.denoisers import Denoiser
    from effdiff.sampling import sample
    from effdiff.video.block_causal import KVCache
    from effdiff.video.sampling import BlockNet, generate_stream
    den, sig, noise, y = small_stream()
    net = den.net
    with torch.no_grad():
        z = generate_stream(den, noise, sig, "euler", y, overlap=1)
        plain = generate_stream(den, noise, sig, "euler", y)
        cache = KVCache(2, 2, 1)
        net.commit(z[:, :, :2], 0.0, y, cache, 0)
        b1 = sample(Denoiser(BlockNet(net, cache, 2), den.process, den.prediction, 10), noise[:, :, 2:5] * sig[0],
                    sig, "euler", cond=y)
    assert torch.equal(z[:, :, :2], plain[:, :, :2]) and torch.allclose(z[:, :, 2:4], b1[:, :, :2], atol=1e-12)
    assert not torch.allclose(z[:, :, 2:4], plain[:, :, 2:4])
    with pytest.raises(ValueError, match="overlap"):
        generate_stream(den, noise, sig, "euler", y, overlap=-1)


def test_a_cards_stream_options_are_the_models_stream_defaults():
    """The zoo's video-dit streams with the options its registered confirm chose (card ``stream_options``: lookahead
    16, overlap 1, two lookahead blocks); a call's own options override them; an unknown option is a clear error."""
    import effdiff as ed
    from effdiff.video.sampling import card_stream_options
    vm = ed.zoo.load("video-dit")
    assert vm.stream_options == {"lookahead": 16, "overlap": 1, "lookahead_blocks": 2}
    assert card_stream_options({}) == {} and card_stream_options({"stream_options": {"overlap": "2"}}) == {"overlap": 2}
    with pytest.raises(ValueError, match="unknown stream options"):
        card_stream_options({"stream_options": {"look": 1}}, "x.json")
    seen = {}
    vm.stream_options = {"lookahead": 8, "lookahead_blocks": 2, "overlap": 1}
    with patch.dict("effdiff.video.sampling.MODES", {"stream": lambda *a, **kw: seen.update(kw)}):
        vm.generate(None, None, mode="stream", lookahead=0)         # turning the lookahead off drops its blocks
        assert seen == {"lookahead": 0, "overlap": 1}
        seen.clear()
        vm.generate(None, None, mode="stream", overlap=0)
        assert seen == {"lookahead": 8, "lookahead_blocks": 2, "overlap": 0}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_rope_rotates_each_channel_pair_in_every_dtype(dtype):
    """``rotate`` (one complex product in float32/64, the pairwise formula in bfloat16) equals the pairwise formula
    to rounding, on a strided input laid out as ``project`` reads it (token-major q and k of a qkv projection), and
    ``rope`` is the rotation by frame * base^(-2i/d). (The complex product has the same products and sums; where
    PyTorch's scalar loop contracts them into fused multiply-adds it can differ in the last bit.)"""
    from effdiff.video.attention import _rope_table, rope, rotate
    g = torch.Generator().manual_seed(3)
    qkv = torch.randn(2, 12, 3, 2, 8, generator=g, dtype=torch.float64).to(dtype)   # [B, N, 3, H, d]: 3 frames x 4
    frames = torch.tensor([5, 6, 7])
    cos, sin, z = _rope_table((5, 6, 7), 4, 8, 10000.0, dtype, qkv.device)
    assert (z is None) == (dtype == torch.bfloat16)
    x = qkv[:, :, :2]                                                # not contiguous
    x1, x2 = x[..., 0::2], x[..., 1::2]
    c, s = cos[:, None, None], sin[:, None, None]
    want = torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], -1).flatten(-2)
    got = rotate(x, c, s, None if z is None else z[:, None, None])
    tol = {torch.float32: 1e-6, torch.float64: 1e-15, torch.bfloat16: 0.0}[dtype]
    assert torch.allclose(got, want, rtol=0, atol=tol) and not torch.equal(got, x)
    q = x.permute(2, 0, 3, 1, 4)[0]                                  # [B, H, N, d], as rope() takes it
    assert torch.allclose(rope(q, frames, 4), want.permute(2, 0, 3, 1, 4)[0], rtol=0, atol=tol)
    if dtype == torch.float64:
        ang = torch.tensor([5., 6., 7.], dtype=dtype).repeat_interleave(4)[:, None] * \
            10000.0 ** (-torch.arange(0, 8, 2, dtype=dtype) / 8)
        turned = torch.view_as_complex(x.unflatten(-1, (-1, 2)).contiguous()) * torch.polar(torch.ones_like(ang), ang)[
            :, None, None]
        assert torch.allclose(torch.view_as_real(turned).flatten(-2), got, atol=1e-12)


def test_a_blocks_steps_reuse_one_key_buffer_equal_to_concatenating():
    """``Past.join`` writes each step's own keys after the cached ones in one buffer per shape; every step's keys
    equal the concatenation, and under autograd it concatenates (nothing is written in place)."""
    from effdiff.video.block_causal import Past
    g = torch.Generator().manual_seed(4)
    pk, pv = torch.randn(2, 2, 6, 4, generator=g), torch.randn(2, 2, 6, 4, generator=g)
    past = Past(pk, pv, torch.tensor([0, 1, 2]))
    first = None
    for step in range(3):
        k, v = torch.randn(2, 2, 4, 4, generator=g), torch.randn(2, 2, 4, 4, generator=g)
        with torch.no_grad():
            kk, vv, kf = past.join(k, v, torch.tensor([3, 4]))
        assert torch.equal(kk, torch.cat([pk, k], 2)) and torch.equal(vv, torch.cat([pv, v], 2))
        assert kf.tolist() == [0, 1, 2, 3, 4]
        first = kk if first is None else first
        assert kk.data_ptr() == first.data_ptr()                     # the same buffer, step after step
    k.requires_grad_(True)
    kk, _, _ = past.join(k, v, torch.tensor([3, 4]))
    assert kk.requires_grad and kk.data_ptr() != first.data_ptr()


def test_the_cache_reads_a_run_of_frames_as_a_view_and_gathers_any_other_selection():
    cache = KVCache(1, 2, 0)
    g = torch.Generator().manual_seed(5)
    k = torch.randn(1, 2, 5 * 3, 4, generator=g)                      # 5 frames of 3 tokens
    cache.append([(k, k.clone())], torch.arange(5))
    for sel in ([False, True, True, False, False], [True, False, True, False, True]):
        sel = torch.tensor(sel)
        got = cache.tokens(sel)(k)
        assert torch.equal(got, k[:, :, sel.repeat_interleave(3)])
        assert (got.data_ptr() == k[:, :, 3:].data_ptr()) == (sel.tolist() == [False, True, True, False, False])
