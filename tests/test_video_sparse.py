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


@pytest.mark.parametrize("name,config", [("adaspa", {"density": 1.0}), ("sliding-tile", {"window": 100})])
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
    assert sta_macs == pytest.approx(dense * 5 / 16, rel=0.01)      # <= 5 key frames of 16 (edges padded)
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
