"""The video evaluator: moving digits are deterministic and split by digit source; shuffled or frozen
frames score worse than real clips; bad input is refused."""
import pytest
import torch

from effdiff.video.data import moving_digits, bounce, clips_of, frames_of
from effdiff.video.evaluator import VideoEvaluator, ink_centres, windows


@pytest.fixture(scope="module")
def ev():
    return VideoEvaluator.shipped()


def test_moving_digits_are_seeded_and_bounce_inside_the_canvas():
    a, ya = moving_digits("train", 8, 12, seed=3)
    b, yb = moving_digits("train", 8, 12, seed=3)
    c, _ = moving_digits("train", 8, 12, seed=4)
    assert torch.equal(a, b) and torch.equal(ya, yb) and not torch.equal(a, c)
    assert a.shape == (8, 1, 12, 32, 32) and a.min() >= -1 and a.max() <= 1
    p = bounce(2.0, 3.0, 10, 40)
    assert p.min() >= 0 and p.max() <= 10 and (abs(p[1:] - p[:-1]) <= 3).all()
    assert torch.equal(clips_of(frames_of(a), 12), a)
    step = ink_centres(a).diff(dim=1).norm(dim=-1)
    assert step.max() < 5                               # speed <= 3 px/frame (+ rounding)


def test_splits_use_different_digits():
    t, _ = moving_digits("train", 4, 1, seed=0)
    h, _ = moving_digits("test", 4, 1, seed=0)
    assert not torch.equal(t, h)
    with pytest.raises(ValueError, match="unknown moving-digits split"):
        moving_digits("val", 2)


def test_shuffled_and_frozen_frames_score_worse_than_real(ev):
    x, y = moving_digits("test", 300, 16, seed=11)
    g = torch.Generator().manual_seed(0)
    shuffled = x[:, :, torch.randperm(16, generator=g)]
    frozen = x[:, :, :1].expand_as(x).contiguous()
    real, sh, fr = ev.score(x, y), ev.score(shuffled, y), ev.score(frozen, y)
    assert sh["clip_fd"] > 3 * real["clip_fd"] and fr["clip_fd"] > 3 * real["clip_fd"]
    assert sh["accel"] > 2 * real["accel"] and fr["speed"] < 0.1 < real["speed"]
    assert abs(sh["frame_fd"] - real["frame_fd"]) < 1e-6          # per-frame FD is blind to order
    assert real["identity"] > 0.9 and real["label_acc"] > 0.9


def test_long_clips_are_scored_in_windows_and_bad_input_is_refused(ev):
    x, _ = moving_digits("test", 4, 40, seed=1)
    assert windows(x).shape == (8, 1, 16, 32, 32)
    assert ev.score(x)["frames"] == 40
    with pytest.raises(ValueError, match="video samples must be"):
        ev.score(torch.zeros(4, 1, 8, 32, 32))
    with pytest.raises(ValueError, match="NaN"):
        ev.score(torch.full((4, 1, 16, 32, 32), float("nan")))


def test_moving_digits_are_in_effdiff_data():
    """``effdiff.data.video`` names the generator: the same clips as calling it, a clear error otherwise."""
    from effdiff import data
    x, y = data.video("moving-digits", "test", n=3, frames=4, seed=5)
    x2, y2 = moving_digits("test", n=3, frames=4, seed=5)
    assert x.shape == (3, 1, 4, 32, 32) and torch.equal(x, x2) and torch.equal(y, y2)
    with pytest.raises(ValueError, match="moving-digits"):
        data.video("bouncing-balls")
