"""Distributed inference on the video DiT (2 gloo ranks, one spawn): the batch-split methods (CFG
branches on different ranks; ParaDiGMS windows) and the frame split (patch / sequence / ring put each
rank on a share of the frames, effdiff.video.parallel; more in tests/test_video_parallel.py) reproduce
one rank on video clips. PipeFusion splits an image DiT's blocks and must refuse the video DiT, not
return a wrong clip."""
import pytest
import torch

import effdiff as ed
from effdiff import distributed as D
from effdiff.denoisers import Denoiser
from effdiff.process import Flow
from effdiff.video.model import VideoDiT, VideoDiTConfig


def _video_den():
    torch.manual_seed(0)
    net = VideoDiT(VideoDiTConfig(hidden_size=32, depth=2, num_heads=2, block_frames=2, window_blocks=1))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return Denoiser(net.eval(), Flow(), "velocity", 10)


def _work():
    den = _video_den()
    sig = ed.timesteps.karras(6, sigma_min=0.02, sigma_max=20.0)
    x = torch.randn(2, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sig[0]
    y = torch.tensor([1, 2])
    res = {}
    ref = ed.sample(ed.guided(den, 2.0), x, sig, "ddim", cond=y)
    out = ed.sample(D.parallel(den, "cfg", 2.0, D.Comm()), x, sig, "ddim", cond=y)
    res["cfg"] = float((out - ref).abs().max())
    one = ed.sample(den, x, sig, "paradigms", cond=y, window=4)
    two = ed.sample(D.BatchParallel(den, D.Comm()), x, sig, "paradigms", cond=y, window=4)
    res["paradigms"] = float((one - two).abs().max())
    for m in ("patch", "sequence", "ring"):
        out = ed.sample(D.parallel(den, m, 2.0, D.Comm()), x, sig, "ddim", cond=y)
        res[m] = float((out - ref).abs().max())
    for m in ("pipefusion",):
        try:
            ed.sample(D.parallel(den, m, 1.0, D.Comm()), x, sig, "ddim", cond=y)
            res[m] = "ran"
        except Exception as e:                      # noqa: BLE001  (the refusal is what is recorded)
            res[m] = f"{type(e).__name__}: {e}"
    return res


@pytest.fixture(scope="module")
def ranks():
    return D.launch(_work, 2)


def test_batch_split_methods_reproduce_one_rank(ranks):
    for r in ranks:
        assert r["cfg"] < 1e-5 and r["paradigms"] < 1e-5


def test_frame_split_methods_reproduce_one_rank(ranks):
    for r in ranks:
        for m in ("patch", "sequence", "ring"):
            assert r[m] < 1e-5, (m, r[m])


def test_pipefusion_refuses_the_video_dit(ranks):
    print(ranks[0]["pipefusion"][:160])
    for r in ranks:
        assert r["pipefusion"].startswith("TypeError"), r["pipefusion"]
