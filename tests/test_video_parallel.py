"""Frame parallelism on the video DiT (effdiff.video.parallel), 2 gloo ranks in one spawn, float64:
``D.parallel(den, "patch" | "sequence" | "ring", scale)`` splits a VideoDiT's frames across ranks and
reproduces one process (also under classifier-free guidance), and so does block-causal streaming with
``patch``; the bytes each rank sends follow the methods' formulas; a frame count that does not divide,
streaming with ``sequence``/``ring``, and a sparse attention processor are refused; an image DiT still
takes the image (row slab) path."""
import pytest
import torch

import effdiff as ed
from effdiff import distributed as D
from effdiff.denoisers import Denoiser
from effdiff.models.dit import DiT, DiTConfig
from effdiff.process import Flow
from effdiff.video.model import VideoDiT, VideoDiTConfig
from effdiff.video.sampling import generate_stream

METHODS = ("patch", "sequence", "ring")
CFG = VideoDiTConfig(hidden_size=32, depth=2, num_heads=2, block_frames=2, window_blocks=1)


def _random(net):
    torch.manual_seed(0)
    for p in net.parameters():                   # adaLN-Zero starts at the identity: randomise everything
        torch.nn.init.normal_(p, std=0.05)
    return Denoiser(net.double().eval(), Flow(), "velocity", 10)


def _refusal(fn) -> str:
    try:
        fn()
        return "ran"
    except Exception as e:                       # noqa: BLE001  (the refusal is what is recorded)
        return f"{type(e).__name__}: {e}"


def _bytes_one_call(den, method, x, y):
    comm = D.Comm()
    D.parallel(den, method, 1.0, comm)(x, torch.tensor(1.0, dtype=x.dtype), y)
    return comm.bytes_sent


def _work():
    den = _random(VideoDiT(CFG))
    sig = ed.timesteps.karras(4, sigma_min=0.02, sigma_max=20.0).double()
    x = torch.randn(2, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * sig[0]
    y = torch.tensor([1, 2])
    res = {"rank": D.rank()}
    for scale in (1.0, 2.0):
        ref = ed.sample(ed.guided(den, scale), x, sig, "ddim", cond=y)
        for m in METHODS:
            out = ed.sample(D.parallel(den, m, scale, D.Comm()), x, sig, "ddim", cond=y)
            res[f"{m}@{scale}"] = float((out - ref).abs().max())
        res[f"ref@{scale}"] = float(ref.abs().max())
    stale = ed.sample(D.parallel(den, "patch", 1.0, D.Comm(), mode="stale", warmup=1), x, sig, "ddim", cond=y)
    res["stale"] = float((stale - ed.sample(den, x, sig, "ddim", cond=y)).abs().max())
    res["bytes"] = {m: _bytes_one_call(den, m, x, y) for m in METHODS}
    comm = D.Comm()
    ed.sample(D.parallel(den, "patch", 2.0, comm), x, sig, "ddim", cond=y)
    res["bytes_per_step_cfg"] = comm.bytes_sent / (len(sig) - 1)
    odd = torch.randn(2, 4, 5, 8, 8, dtype=torch.float64)
    res["odd"] = _refusal(lambda: D.parallel(den, "ring", 1.0, D.Comm())(odd, torch.tensor(1.0), y))
    noise6 = torch.randn(2, 4, 6, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for scale in (1.0, 2.0):                     # 3 blocks of 2 frames (1 per rank), window 1: eviction too
        ref = generate_stream(den, noise6, sig, "ddim", y, scale)
        out = generate_stream(D.parallel(den, "patch", 1.0, D.Comm()), noise6, sig, "ddim", y, scale)
        res[f"stream@{scale}"] = float((out - ref).abs().max())
    stale = generate_stream(D.parallel(den, "patch", 1.0, D.Comm(), mode="stale", warmup=1), noise6, sig, "ddim", y)
    res["stream_stale"] = float((stale - generate_stream(den, noise6, sig, "ddim", y)).abs().max())
    res["stream"] = _refusal(lambda: generate_stream(D.parallel(den, "ring", 1.0, D.Comm()), noise6, sig, "ddim", y))
    res["pipefusion"] = _refusal(lambda: D.parallel(den, "pipefusion", 1.0, D.Comm()))
    sparse = _random(VideoDiT(CFG))
    par = D.parallel(sparse, "patch", 1.0, D.Comm())
    sparse.net.blocks[1].attn.processor = lambda q, k, v, call: v            # a technique installed afterwards
    res["sparse"] = _refusal(lambda: par(x, torch.tensor(1.0), y))
    from effdiff.video import sparse as sp
    sp.register()                                # in this spawned rank only
    ed.techniques.apply("adaspa", sparse)         # installed before: refused when the split is made
    res["adaspa"] = _refusal(lambda: D.parallel(sparse, "ring", 1.0, D.Comm()))
    img = _random(DiT(DiTConfig(hidden_size=32, depth=2, num_heads=2, image_size=8)))
    xi = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * sig[0]
    one = ed.sample(img, xi, sig, "ddim", cond=y)
    par = D.parallel(img, "sequence", 1.0, D.Comm())
    res["image_net"] = type(par.net).__name__
    res["image"] = float((ed.sample(par, xi, sig, "ddim", cond=y) - one).abs().max())
    return res


@pytest.fixture(scope="module")
def ranks():
    return D.launch(_work, 2)


@pytest.mark.parametrize("scale", [1.0, 2.0])
@pytest.mark.parametrize("method", METHODS)
def test_frame_split_equals_one_process(ranks, method, scale):
    for r in ranks:
        assert r[f"ref@{scale}"] > 0.1                          # a clip, not zeros
        assert r[f"{method}@{scale}"] < 1e-10, (method, scale, r[f"{method}@{scale}"])


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_frame_split_streaming_equals_one_process(ranks, scale):
    for r in ranks:
        assert r[f"stream@{scale}"] < 1e-10, (scale, r[f"stream@{scale}"])


@pytest.mark.parametrize("key", ["stale", "stream_stale"])
def test_stale_patch_mode_is_used_and_bounded(ranks, key):
    print(key, "max |dx|:", ranks[0][key])
    for r in ranks:
        assert 1e-8 < r[key] < 0.5                              # other frames' K/V one step old: not exact


def test_bytes_sent_follow_each_methods_formula(ranks):
    B, R, E, D_ = 2, 2, 8, CFG.hidden_size                      # float64 = 8 bytes
    n = 2 * (CFG.frame_size // CFG.patch_size) ** 2             # 2 frames of 16 tokens per rank
    out = B * n * CFG.patch_size ** 2 * CFG.in_channels * E * (R - 1)   # the output frames' all-gather
    kv = 2 * B * n * D_ * E
    want = {"patch": CFG.depth * kv * (R - 1) + out,            # K/V all-gathered per layer
            "sequence": CFG.depth * int(4 * B * n * D_ * E * (R - 1) / R) + out,   # q, k, v and output all-to-all
            "ring": CFG.depth * kv * (R - 1) + out}             # R-1 K/V blocks per layer
    for r in ranks:
        assert r["bytes"] == want
    print("bytes per DDIM step, patch, CFG 2, 2 clips x 4 frames:", ranks[0]["bytes_per_step_cfg"])


def test_refusals_are_clear(ranks):
    for r in ranks:
        assert r["odd"].startswith("ValueError") and "5 frames" in r["odd"], r["odd"]
        assert r["stream"].startswith("NotImplementedError") and "'patch'" in r["stream"], r["stream"]
        assert r["pipefusion"].startswith("TypeError"), r["pipefusion"]
        for k in ("sparse", "adaspa"):
            assert r[k].startswith("TypeError") and "dense attention" in r[k], r[k]


def test_an_image_dit_keeps_the_image_path(ranks):
    for r in ranks:
        assert r["image_net"] == "SlabNet" and r["image"] < 1e-10
