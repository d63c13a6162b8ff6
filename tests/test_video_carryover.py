"""Everything effdiff has carries over to video: every registered solver, a few schedules and every
registered technique (caching, early exit, quantization, pruning, systems) run on a small video
denoiser x [B, C, T, H, W], or decline with a reason. Techniques that build inputs of their own (L2C's teacher
trajectories, Diff-Pruning's calibration data) take the shape of the run they are prepared on; KNOWN_GAPS lists
any that do not carry over (none now; the test fails when that changes)."""
import pytest
import torch

import effdiff as ed
from effdiff import techniques as T
from effdiff.denoisers import Denoiser
from effdiff.process import Flow
from effdiff.video import sparse
from effdiff.video.model import VideoDiT, VideoDiTConfig

KNOWN_GAPS: dict = {}


@pytest.fixture(scope="module", autouse=True)
def attention_techniques():
    """Register the video attention techniques for this module only, then restore the registry."""
    sparse.register()
    yield
    sparse.unregister()


@pytest.fixture(scope="module")
def video():
    torch.manual_seed(0)
    net = VideoDiT(VideoDiTConfig(hidden_size=32, depth=2, num_heads=2, block_frames=2, window_blocks=1))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    den = Denoiser(net.eval(), Flow(), "velocity", 10)
    sig = ed.timesteps.karras(4, sigma_min=0.02, sigma_max=20.0)
    x = torch.randn(2, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sig[0]
    return den, x, sig, torch.tensor([1, 2])


def test_every_solver_runs_on_video(video):
    den, x, sig, y = video
    for s in ed.solvers.names():
        out = ed.sample(den, x, sig, s, cond=y, seed=0)
        assert out.shape == x.shape and torch.isfinite(out).all(), s


@pytest.mark.parametrize("schedule", ["karras", "logsnr_uniform", "uniform_t"])
def test_schedules_run_on_video(video, schedule):
    den, x, _, y = video
    fn = getattr(ed.timesteps, schedule)
    sig = fn(5, den.process) if schedule == "uniform_t" else fn(5, sigma_min=0.02, sigma_max=20.0)
    out = ed.sample(den, torch.randn_like(x) * float(sig[0]), sig, "dpmpp-2m", cond=y)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_every_technique_runs_or_declines_on_video(video):
    den, x, sig, y = video
    ran, declined, failed = [], [], {}
    for name in T.names():
        t = T.get(name)
        why = t.why_not(den)
        if why:
            assert isinstance(why, str) and why
            declined.append(name)
            continue
        try:
            cfg = t.eager(4) if t.eager else None
            if t.needs:
                cfg = t.prepare(den, cfg, T.Run(x, sig, "euler", y))
            with t.apply(den, cfg) as h:
                out = h.sample(den, x, sig, "euler", y)
            assert out.shape == x.shape and torch.isfinite(out).all(), name
            ran.append(name)
        except (ValueError, AttributeError, TypeError, RuntimeError) as e:
            failed[name] = f"{type(e).__name__}: {e}"
    assert set(failed) == set(KNOWN_GAPS), failed
    assert {"fora", "delta-dit", "int8", "ptq", "svdquant", "adaspa", "sliding-tile", "sparse-videogen",
            "diff-pruning", "l2c"} <= set(ran)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in den.modules())


def test_diff_pruning_calibrates_a_video_model_on_its_own_samples(video):
    """No dataset of clips is known to the technique: it draws the run's shape from the model itself."""
    from effdiff.prune.diff_pruning import calibration_batch
    den, x, sig, y = video
    x0, cond = calibration_batch(den, 3, T.Run(x, sig, "euler", y))
    assert x0.shape == (3, *x.shape[1:]) and cond.tolist() == [1, 2, 1]
    img, _ = calibration_batch(den, 3)                      # no run: the image dataset, as before
    assert img.shape[1:] == (1, 8, 8)
