"""Sparse attention on the video DiT: full density equals dense attention; sparse patterns cut MACs."""
import pytest
import torch

from effdiff import techniques as T
from effdiff.denoisers import Denoiser
from effdiff.process import Flow
from effdiff.video import sparse
from effdiff.video.attention import MACS
from effdiff.video.block_causal import KVCache
from effdiff.video.model import VideoDiT, VideoDiTConfig
from effdiff.video.sampling import clip_noise, generate_full, generate_stream


@pytest.fixture(scope="module", autouse=True)
def attention_techniques():
    """Register the video attention techniques for this module only, then restore the registry."""
    sparse.register()
    yield
    sparse.unregister()


def tiny_den():
    torch.manual_seed(0)
    net = VideoDiT(VideoDiTConfig(hidden_size=32, depth=2, num_heads=2, block_frames=2, window_blocks=2))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return Denoiser(net.double().eval(), Flow(), "velocity", 10)


SIG = torch.tensor([4.0, 1.0, 0.25, 0.0], dtype=torch.float64)


@pytest.mark.parametrize("name,config", [("adaspa", {"density": 1.0}), ("sliding-tile", {"window": 100}),
                                         ("sliding-tile", {"window": 0, "far_tokens": 16}),    # 4x4 tokens per frame
                                         ("sliding-tile", {"window": 0, "dense_heads": (0, 1)})])
@pytest.mark.parametrize("mode", [generate_full, generate_stream])
def test_full_density_equals_dense(name, config, mode):
    den = tiny_den()
    noise = clip_noise(2, (4, 8, 8, 8), 0).double()
    y = torch.tensor([0, 5])
    with torch.no_grad():
        ref = mode(den, noise, SIG, "euler", y)
        with T.get(name).apply(den, config) as h:
            out = mode(den, noise, SIG, "euler", y)
    assert torch.allclose(out, ref, atol=1e-10)
    assert h.stats.calls > 0 and h.stats.macs >= h.stats.dense_macs * 0.999
    assert all(m.processor is not None for m in sparse.attention_modules(den))


def test_sparse_patterns_cut_attention_macs_and_adaspa_reuses_its_search():
    den = tiny_den()
    noise = clip_noise(2, (4, 16, 8, 8), 1).double()
    with torch.no_grad():
        MACS.reset()
        ref = generate_full(den, noise, SIG, "euler")
        dense = MACS.macs
        with T.get("adaspa").apply(den, density=0.25) as ada:
            MACS.reset()
            a = generate_full(den, noise, SIG, "euler")
            ada_macs = MACS.macs
        with T.get("sliding-tile").apply(den, window=2) as sta:
            MACS.reset()
            s = generate_full(den, noise, SIG, "euler")
            sta_macs = MACS.macs
    assert ada.stats.searches == 2                       # one search per layer, reused on steps 1 and 2
    assert ada_macs == pytest.approx(dense * (1 + 2 * 0.25) / 3)   # step 0 dense, then 25% of key frames
    assert sta_macs * 256 == dense * (16 * 5 - 2 * 2 - 2 * 1)     # 5 key frames of 16, fewer at the edges
    assert sta.stats.macs == sta_macs and sta.stats.dense_macs == dense
    for out in (a, s):
        assert torch.isfinite(out).all() and not torch.allclose(out, ref)


def test_registry_and_applicability():
    assert {"adaspa", "sliding-tile"} <= set(T.names())
    assert T.get("adaspa").applies_to(tiny_den())
    img = Denoiser(torch.nn.Linear(2, 2), Flow(), "velocity")
    assert not T.get("sliding-tile").applies_to(img)
    with pytest.raises(ValueError, match="video DiT"):
        T.get("sliding-tile").apply(img)


def call_of(F: int, mask=None, start: int = 0):
    from effdiff.video.attention import AttentionCall
    fr = torch.arange(start, start + F)
    return AttentionCall(fr, fr, 2, mask, 0)


def qkv(F: int, P: int = 2):
    g = torch.Generator().manual_seed(3)
    return [torch.randn(2, 2, F * P, 4, generator=g, dtype=torch.float64) for _ in range(3)]


def test_sink_mask_keeps_each_rows_first_allowed_key_frames():
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    m = sparse.sink_mask(call_of(5, causal, start=7), 2)
    assert torch.equal(m, causal & (torch.arange(5)[None, :] < 2))
    assert not sparse.sink_mask(call_of(5), 0).any()
    shifted = causal.clone()
    shifted[:, 0] = False                                    # key frame 7 masked: the sink moves on to 8 and 9
    assert torch.equal(sparse.sink_mask(call_of(5, shifted, start=7), 2)[4], torch.tensor([False, True, True, False, False]))


@pytest.mark.parametrize("window,sink,stride,ahead", [(1, 0, 0, -1), (1, 2, 0, -1), (0, 3, 0, -1), (2, 1, 0, -1),
                                                      (0, 0, 3, -1), (1, 1, 4, -1), (3, 0, 0, 0), (4, 1, 0, 1),
                                                      (1, 0, 0, 3)])
def test_sliding_tile_with_sink_equals_dense_attention_under_the_union_mask(window, sink, stride, ahead):
    """Each query frame attends exactly to its window (``window`` frames back, ``ahead`` forward; -1: ``window``),
    the first ``sink`` key frames and (``stride``) the frames at multiples of ``stride`` from it, nothing else."""
    from effdiff.video.attention import dense_attention
    F = 8
    q, k, v = qkv(F)
    fr = torch.arange(F)
    back = fr[:, None] - fr[None, :]
    dist = back.abs()
    inside = (back <= window) & (-back <= (window if ahead < 0 else ahead))
    union = inside | (fr[None, :] < sink) | ((dist % stride == 0) if stride else False)
    stats = sparse.AttentionStats()
    cfg = sparse.SlidingTileConfig(window=window, sink=sink, stride=stride, ahead=ahead)
    out = sparse.SlidingTile(cfg, stats)(q, k, v, call_of(F))
    ref = dense_attention(q, k, v, call_of(F, union))
    assert torch.allclose(out, ref, atol=1e-12)
    assert stats.macs == 2 * 2 * 2 * int(union.sum()) * 2 ** 2 * 4 and stats.dense_macs == 2 * 2 * 2 * F * F * 2 ** 2 * 4


def test_pool_frames_averages_each_frames_token_grid():
    x = torch.arange(2 * 16, dtype=torch.float64).reshape(1, 1, 2 * 16, 1)     # 2 frames of a 4x4 grid
    grid = x.reshape(2, 1, 4, 4)
    assert torch.equal(sparse.pool_frames(x, 16, 4).reshape(2, 4),
                       torch.nn.functional.avg_pool2d(grid, 2).reshape(2, 4))
    assert torch.equal(sparse.pool_frames(x, 16, 1).reshape(2), grid.mean((1, 2, 3)))
    with pytest.raises(ValueError, match="square grid"):
        sparse.pool_frames(x, 16, 2)


@pytest.mark.parametrize("causal", [False, True])
def test_far_frames_unpooled_equal_dense_attention(causal):
    """far_tokens = P: the frames outside the window are seen whole (log 1 = 0 added), so any window is exact."""
    from effdiff.video.attention import dense_attention
    F, P = 7, 4
    q, k, v = qkv(F, P)
    mask = torch.ones(F, F, dtype=torch.bool).tril() if causal else None
    call = call_of(F, mask)
    call.tokens = P
    stats = sparse.AttentionStats()
    out = sparse.SlidingTile(sparse.SlidingTileConfig(window=1, far_tokens=P), stats)(q, k, v, call)
    assert torch.allclose(out, dense_attention(q, k, v, call), atol=1e-12)
    keep = sparse.window_keep(call, 1)
    K, Kf = int(keep.sum(1).max()), int((sparse.frame_mask(call) & ~keep).sum(1).max())   # the widest rows, gathered
    assert stats.macs == 2 * 2 * 2 * F * (K + Kf) * P * P * 4 and Kf == 5


def test_far_frames_pooled_are_exact_when_each_frame_is_uniform():
    """Proportional attention: a pooled token stands for P / far_tokens equal tokens, so where every token of a frame
    has the same key and value, window + pooled far frames equal dense attention; otherwise they differ, and the
    MACs count the window's frames whole and each far frame as far_tokens tokens."""
    from effdiff.video.attention import dense_attention
    F, P, d = 8, 4, 4
    q, k, v = qkv(F, P)
    ku, vu = (t.reshape(2, 2, F, P, d)[:, :, :, :1].expand(-1, -1, -1, P, -1).reshape(2, 2, F * P, d) for t in (k, v))
    call = call_of(F)
    call.tokens = P
    for m in (1, 4):
        stats = sparse.AttentionStats()
        proc = sparse.SlidingTile(sparse.SlidingTileConfig(window=1, ahead=0, far_tokens=m), stats)
        assert torch.allclose(proc(q, ku, vu, call), dense_attention(q, ku, vu, call), atol=1e-12)
        assert stats.macs == 2 * 2 * 2 * F * (2 * P + (F - 1) * m) * P * d   # rows gather 2 near, F - 1 pooled frames
    plain = sparse.SlidingTile(sparse.SlidingTileConfig(window=1, ahead=0), sparse.AttentionStats())(q, k, v, call)
    pooled = sparse.SlidingTile(sparse.SlidingTileConfig(window=1, ahead=0, far_tokens=1),
                                sparse.AttentionStats())(q, k, v, call)
    dense = dense_attention(q, k, v, call)
    assert not torch.allclose(pooled, dense, atol=1e-6) and not torch.allclose(pooled, plain, atol=1e-6)
    with pytest.raises(ValueError, match="far_tokens"):
        sparse.SlidingTile(sparse.SlidingTileConfig(far_tokens=-1), sparse.AttentionStats())


def test_dense_heads_attend_densely_and_the_others_to_the_window():
    """DuoAttention's split: the listed heads are exact attention, the rest the plain pattern, in one call."""
    from effdiff.video.attention import dense_attention
    F = 8
    q, k, v = qkv(F)
    call = call_of(F)
    stats = sparse.AttentionStats()
    out = sparse.SlidingTile(sparse.SlidingTileConfig(window=1, sink=1, dense_heads=(1,)), stats)(q, k, v, call)
    plain_stats = sparse.AttentionStats()
    plain = sparse.SlidingTile(sparse.SlidingTileConfig(window=1, sink=1), plain_stats)(q, k, v, call)
    dense = dense_attention(q, k, v, call)
    assert torch.allclose(out[:, 1], dense[:, 1], atol=1e-12) and torch.allclose(out[:, 0], plain[:, 0], atol=1e-12)
    assert stats.macs == (plain_stats.macs + stats.dense_macs) // 2 and stats.dense_macs == plain_stats.dense_macs
    every = sparse.SlidingTile(sparse.SlidingTileConfig(window=0, dense_heads=(0, 1)), sparse.AttentionStats())
    assert torch.allclose(every(q, k, v, call), dense, atol=1e-12)
    with pytest.raises(ValueError, match="2 heads"):
        sparse.SlidingTile(sparse.SlidingTileConfig(dense_heads=(2,)), sparse.AttentionStats())(q, k, v, call)


def test_sink_config_counts_its_macs_and_covers_the_stream_window():
    den = tiny_den()                                         # blocks of 2 frames, 2 cached blocks: <= 6 key frames
    noise = clip_noise(2, (4, 16, 8, 8), 1).double()
    with torch.no_grad():
        MACS.reset()
        ref_full = generate_full(den, noise, SIG, "euler")
        dense_full = MACS.macs
        with T.get("sliding-tile").apply(den, window=2, sink=2) as sta:
            MACS.reset()
            generate_full(den, noise, SIG, "euler")
        fr = torch.arange(16)
        kept = int((((fr[:, None] - fr[None, :]).abs() <= 2) | (fr[None, :] < 2)).sum())   # 5 near + 2 sink, fewer at edges
        assert MACS.macs * 256 == dense_full * kept
        assert sta.stats.macs == MACS.macs
        ref = generate_stream(den, noise, SIG, "euler")
        with T.get("sliding-tile").apply(den, window=2, sink=3):     # window + sink cover all 6 key frames
            covered = generate_stream(den, noise, SIG, "euler")
        with T.get("sliding-tile").apply(den, window=2):
            plain = generate_stream(den, noise, SIG, "euler")
    assert torch.allclose(covered, ref, atol=1e-10) and not torch.allclose(plain, ref, atol=1e-6)
    assert not torch.allclose(ref_full, ref)


def test_adaspa_keeps_sink_and_local_frames_in_its_pattern():
    F = 8
    q, k, v = qkv(F)
    ada = sparse.AdaSpa(sparse.AdaSpaConfig(density=0.01, sink=2, local=0), sparse.AttentionStats())
    idx, valid = ada.search(q, k, call_of(F))
    assert idx.shape[-1] == 3 and valid.all()                # 2 sink frames + the query frame itself
    for i in range(F):
        assert {0, 1, i} <= set(idx[0, 0, i].tolist())
    plain = sparse.AdaSpa(sparse.AdaSpaConfig(density=0.25), sparse.AttentionStats())
    assert plain.search(q, k, call_of(F))[0].shape[-1] == 2  # defaults: no forced frames, ceil(0.25 * 8)


def test_bench_row_labels_name_their_technique():
    from types import SimpleNamespace
    from effdiff.bench import video as bench
    den = tiny_den()
    assert bench.technique_of("sliding-tile:sink2") == "sliding-tile" and bench.technique_of("adaspa") == "adaspa"
    seen = bench.with_technique(SimpleNamespace(den=den), "sliding-tile:sink2", {"window": 1, "sink": 2},
                                lambda: sparse.attention_modules(den)[0].processor.config)
    assert seen == sparse.SlidingTileConfig(window=1, sink=2)


def counted(mode, den, noise, name=None, **config):
    """(output, attention MACs, the handle's stats or None) of ``mode`` with technique ``name`` applied."""
    MACS.reset()
    if name is None:
        return mode(den, noise, SIG, "euler"), MACS.macs, None
    with T.get(name).apply(den, **config) as h:
        out = mode(den, noise, SIG, "euler")
    return out, MACS.macs, h.stats


@torch.no_grad()
def test_dense_steps_and_dense_commit_run_exact_attention_where_asked():
    den = tiny_den()
    noise = clip_noise(2, (4, 8, 8, 8), 2).double()
    ref, dense, _ = counted(generate_stream, den, noise)
    same, macs, st = counted(generate_stream, den, noise, "sliding-tile", window=0, dense_steps=3, dense_commit=True)
    assert torch.allclose(same, ref, atol=1e-10) and macs == dense == st.macs
    part, macs, _ = counted(generate_stream, den, noise, "sliding-tile", window=0, dense_steps=3)   # sparse commit
    assert macs < dense and not torch.allclose(part, ref, atol=1e-6)
    ref_full = counted(generate_full, den, noise)[0]
    ada, _, st = counted(generate_full, den, noise, "adaspa", density=0.01, dense_steps=3)   # every step dense
    assert torch.allclose(ada, ref_full, atol=1e-10) and st.macs == st.dense_macs


@torch.no_grad()
@pytest.mark.parametrize("name", ["sliding-tile", "adaspa", "sparse-videogen"])
def test_dense_layers_attend_densely_in_every_call_sampling_and_training(name):
    den = tiny_den()
    noise = clip_noise(2, (4, 8, 8, 8), 2).double()
    eager = {"sliding-tile": {"window": 0}, "adaspa": {"density": 0.01}, "sparse-videogen": {"window": 0}}[name]
    ref, dense, _ = counted(generate_stream, den, noise)
    same, macs, st = counted(generate_stream, den, noise, name, dense_layers=(0, 1), **eager)   # every layer dense
    assert torch.allclose(same, ref, atol=1e-10) and macs == st.macs == st.dense_macs
    part, macs, st = counted(generate_stream, den, noise, name, dense_layers=(1,), **eager)
    none, macs0, _ = counted(generate_stream, den, noise, name, **eager)
    assert macs0 < macs < dense and not torch.allclose(part, ref, atol=1e-6)
    x0 = noise[:, :, :4]                                        # Block Diffusion's training form, no sampling loop
    labels = torch.full((2, 4), 0.5, dtype=torch.float64)
    want = den.net.block_diffusion(x0, x0, labels, 0.0, torch.tensor([1, 2]))
    with T.get(name).apply(den, dense_layers=(0, 1), **eager):
        got = den.net.block_diffusion(x0, x0, labels, 0.0, torch.tensor([1, 2]))
    assert torch.allclose(got, want, atol=1e-10)


def test_adaspa_min_frames_widens_short_contexts_only():
    q, k, v = qkv(8)
    idx = sparse.AdaSpa(sparse.AdaSpaConfig(density=0.25, min_frames=5), sparse.AttentionStats()).search(q, k, call_of(8))[0]
    assert idx.shape[-1] == 5                                 # ceil(0.25 * 8) = 2 < 5
    idx = sparse.AdaSpa(sparse.AdaSpaConfig(density=0.75, min_frames=5), sparse.AttentionStats()).search(q, k, call_of(8))[0]
    assert idx.shape[-1] == 6


# ---- sparse-videogen: spatial and temporal heads, classified by profiling -------------------------------------
def test_neighbours_on_a_token_grid():
    idx, ok = sparse.neighbours(16, 1)                       # a 4x4 grid, 3x3 neighbourhoods
    assert idx.shape == (16, 9) and int(ok[0].sum()) == 4 and int(ok[5].sum()) == 9
    assert torch.equal(sparse.neighbours(16, 0)[0][:, 0], torch.arange(16))
    with pytest.raises(ValueError, match="square"):
        sparse.neighbours(6, 0)


@pytest.mark.parametrize("radius", [0, 1])
def test_temporal_heads_equal_dense_attention_under_the_temporal_mask(radius):
    """A temporal head attends exactly to the same position (+- radius) in every allowed key frame."""
    from effdiff.video.attention import AttentionCall, dense_attention
    F, P = 5, 9                                              # a 3x3 grid: radius 1 misses the far corners
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 3, F * P, 4, generator=g, dtype=torch.float64) for _ in range(3))
    causal = torch.ones(F, F, dtype=torch.bool).tril()
    call = AttentionCall(torch.arange(F), torch.arange(F), P, causal, 0)
    proc = sparse.SparseVideoGen(sparse.SparseVideoGenConfig(radius=radius), sparse.AttentionStats())
    temporal = proc.masks(call)[1]
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=temporal)
    MACS.reset()
    out = sparse.temporal_attention(q[0], k[0], v[0], causal, P, radius)[None]
    assert torch.allclose(out, ref, atol=1e-12)
    assert MACS.macs == 2 * 3 * int(temporal.sum()) * 4 == sparse.temporal_macs(call, 3, 4, radius)
    assert not torch.allclose(out, dense_attention(q, k, v, call))


def test_profiling_picks_the_head_each_pattern_fits():
    """Head 0's keys only match the query's own frame (a spatial head); head 1's only the same position in other
    frames (a temporal head): the profile classifies them so, and the output then equals each pattern's."""
    from effdiff.video.attention import AttentionCall
    F, P, d = 6, 4, 8
    fr = torch.arange(F)
    call = AttentionCall(fr, fr, P, None, 0)
    q = torch.zeros(1, 2, F * P, d, dtype=torch.float64)
    k = torch.zeros_like(q)
    frame, pos = torch.arange(F * P) // P, torch.arange(F * P) % P
    q[0, 0, :, 0] = 1.0
    k[0, 0, :, 0] = 0.0
    q[0, 0, :, 1 + 0] = 8.0 * (frame % 2 == 0) - 8.0 * (frame % 2 == 1)      # head 0: same-frame parity
    k[0, 0, :, 1] = 8.0 * (frame % 2 == 0) - 8.0 * (frame % 2 == 1)
    onehot = torch.nn.functional.one_hot(pos, d).double() * 8.0              # head 1: the same position
    q[0, 1], k[0, 1] = onehot, onehot
    g = torch.Generator().manual_seed(1)
    v = torch.randn(1, 2, F * P, d, generator=g, dtype=torch.float64)
    proc = sparse.SparseVideoGen(sparse.SparseVideoGenConfig(window=0, profile_queries=2), sparse.AttentionStats())
    heads = proc.profile(q, k, v, call)
    assert heads.tolist() == [[False, True]]
    out = proc(q, k, v, call)
    spatial, temporal = proc.masks(call)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    assert torch.allclose(out[:, :1], sdpa(q[:, :1], k[:, :1], v[:, :1], attn_mask=spatial), atol=1e-12)
    assert torch.allclose(out[:, 1:], sdpa(q[:, 1:], k[:, 1:], v[:, 1:], attn_mask=temporal), atol=1e-12)
    assert proc.stats.searches == 2                          # profiled once above, once on the call's first use


@pytest.mark.parametrize("mode", [generate_full, generate_stream])
def test_sparse_videogen_at_full_window_equals_dense_and_cuts_macs_when_sparse(mode):
    den = tiny_den()
    noise = clip_noise(2, (4, 8, 8, 8), 0).double()
    y = torch.tensor([0, 5])
    with torch.no_grad():
        MACS.reset()
        ref = mode(den, noise, SIG, "euler", y)
        dense = MACS.macs
        with T.get("sparse-videogen").apply(den, window=100) as h:
            out = mode(den, noise, SIG, "euler", y)
        assert torch.allclose(out, ref, atol=1e-10)
        with T.get("sparse-videogen").apply(den, window=0, dense_steps=1) as s:
            MACS.reset()
            sp = mode(den, noise, SIG, "euler", y)
    assert h.stats.searches > 0
    assert s.stats.macs == MACS.macs < dense and s.stats.dense_macs == dense
    assert torch.isfinite(sp).all() and not torch.allclose(sp, ref)
    with pytest.raises(ValueError, match="window"):
        T.get("sparse-videogen").apply(den, window=-1)


def test_sliding_tile_keeps_one_pattern_per_frame_set_and_writes_each_head_run_in_place():
    """The pattern is built once per (query frames, key frames) without a mask, and again under a mask; a layer with
    dense heads fills one output tensor run by run, equal to each run computed on its own."""
    from effdiff.video.attention import dense_attention
    F, P = 6, 2
    q, k, v = qkv(F, P)
    proc = sparse.SlidingTile(sparse.SlidingTileConfig(window=1, dense_heads=(1,)), sparse.AttentionStats())
    call = call_of(F)
    first = proc(q, k, v, call)
    assert len(proc.patterns) == 1 and proc.keep(call) is proc.keep(call_of(F))
    assert torch.equal(proc(q, k, v, call), first)
    assert torch.allclose(first[:, 1:], dense_attention(q[:, 1:], k[:, 1:], v[:, 1:], call), atol=1e-12)
    window = sparse.frame_attention(q[:, :1], k[:, :1], v[:, :1], sparse.window_keep(call, 1), P)
    assert torch.equal(first[:, :1], window)
    proc.keep(call_of(F, start=4))
    assert len(proc.patterns) == 2                                     # another frame set: its own pattern
    masked = call_of(F, torch.ones(F, F, dtype=torch.bool).tril())
    assert torch.equal(proc.keep(masked), sparse.window_keep(masked, 1)) and len(proc.patterns) == 2
