import numpy as np
import pytest
import torch
from torch import nn

from effdiff.data import checkerboard, gmm8
from effdiff.metrics import (
    Scorer,
    class_accuracy,
    class_features,
    exact_nll,
    frechet_distance,
    latency,
    macs_per_sample,
    param_bytes,
    peak_memory,
    pinned_threads,
    precision_recall,
    sliced_wasserstein,
    trajectory_error,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- Fréchet distance


def test_fd_identical_is_zero():
    a = torch.randn(500, 16, generator=_gen())
    assert frechet_distance(a, a) < 1e-8
    assert frechet_distance(a.numpy(), a.clone()) < 1e-8


def test_fd_matches_analytic_gaussians():
    # FD is exact on the sample moments: compare with the closed form on those moments
    a = torch.randn(4000, 4, generator=_gen(1), dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    assert abs(frechet_distance(a, a + shift) - float(shift.pow(2).sum())) < 1e-8
    # b = 2a + shift: compare with scipy's complex sqrtm on the same sample moments
    from scipy.linalg import sqrtm

    b = 2 * a + shift
    sa, sb = torch.cov(a.T).numpy(), torch.cov(b.T).numpy()
    ref = float((a.mean(0) - b.mean(0)).pow(2).sum()) + np.trace(sa + sb - 2 * sqrtm(sa @ sb).real)
    assert abs(frechet_distance(a, b) - ref) < 1e-6
    # population check: N(0, I) vs N(mu, 4I) in 4-D -> |mu|^2 + 4 * (1 - 2)^2
    assert abs(frechet_distance(a, b) - (float(shift.pow(2).sum()) + 4.0)) < 0.3


def test_fd_bad_input():
    with pytest.raises(ValueError, match="feature sizes"):
        frechet_distance(torch.randn(10, 3), torch.randn(10, 4))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(torch.full((10, 3), float("nan")), torch.randn(10, 3))


# --------------------------------------------------------------------------- precision / recall


def test_precision_recall_identical_and_disjoint():
    a = torch.randn(300, 8, generator=_gen(2))
    p, r = precision_recall(a, a, k=3)
    assert p == 1.0 and r == 1.0
    p, r = precision_recall(a, a + 100.0, k=3)
    assert p == 0.0 and r == 0.0
    b = torch.randn(300, 8, generator=_gen(3))  # same distribution, fresh samples
    p, r = precision_recall(a, b, k=3)
    assert p > 0.6 and r > 0.6
    with pytest.raises(ValueError, match="k must"):
        precision_recall(a[:3], b[:3], k=3)


def test_precision_recall_detects_mode_collapse():
    real = torch.randn(400, 2, generator=_gen(4))
    fake = 0.1 * torch.randn(400, 2, generator=_gen(5))  # collapsed onto the centre
    p, r = precision_recall(real, fake, k=3)
    assert p > 0.9 and r < 0.3


# --------------------------------------------------------------------------- classifier metrics


class TinyClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Dropout(0.5), nn.ReLU())
        self.head = nn.Linear(16, 10)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


def test_class_features_accuracy_and_scorer():
    torch.manual_seed(0)
    clf = TinyClassifier().train()
    x = torch.randn(70, 1, 8, 8, generator=_gen(6))
    feats, logits = class_features(clf, x, batch_size=32)
    assert feats.shape == (70, 16) and logits.shape == (70, 10)
    assert clf.training  # mode restored
    # eval mode: deterministic despite dropout
    assert torch.allclose(class_features(clf, x)[0], feats, atol=1e-6)
    labels = logits.argmax(1)
    assert class_accuracy(logits, labels) == 1.0
    assert class_accuracy(logits, (labels + 1) % 10) == 0.0

    scorer = Scorer(clf, x)
    out = scorer.score(x, labels=labels)
    assert out["fd"] < 1e-6 and out["precision"] == 1.0 and out["recall"] == 1.0 and out["class_acc"] == 1.0
    assert "class_acc" not in scorer.score(x + 3.0)
    assert scorer.score(x + 3.0)["fd"] > 0.01
    assert scorer.floor(torch.randn(70, 1, 8, 8, generator=_gen(7))) >= 0.0


def test_trajectory_error():
    x = torch.zeros(4, 2, 3)
    ref = torch.zeros(4, 2, 3)
    ref[0] = 2.0  # sample 0: RMSE 2, others 0
    assert trajectory_error(x, ref) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shape"):
        trajectory_error(x, ref[:2])


# --------------------------------------------------------------------------- toy metrics


def test_sliced_wasserstein_identical_and_shift():
    a = gmm8().sample(2000, generator=_gen(8))
    assert sliced_wasserstein(a, a, generator=_gen(0)) < 1e-12
    shift = torch.tensor([0.6, -0.8])  # |s| = 1
    sw = sliced_wasserstein(a, a + shift, n_proj=2000, generator=_gen(0))
    assert sw == pytest.approx(1.0 / np.sqrt(2), rel=0.05)
    # unequal sizes via quantiles: two samples of the same distribution are close
    b = gmm8().sample(1500, generator=_gen(9))
    assert sliced_wasserstein(a, b, generator=_gen(0)) < 0.1
    assert sliced_wasserstein(a, b + shift, generator=_gen(0)) > 0.5


def test_exact_nll():
    g = gmm8()
    s = g.sample(5000, generator=_gen(10))
    nll = exact_nll(g, s)
    # true samples score near the entropy; far-off points much worse
    assert nll < exact_nll(g, s * 0.0) and np.isfinite(nll)
    cb = checkerboard()
    assert exact_nll(cb, cb.sample(100, generator=_gen(11))) == pytest.approx(np.log(8.0))
    outside = torch.tensor([[5.0, 5.0]])
    assert exact_nll(cb, outside) == float("inf")
    assert exact_nll(cb, outside, min_log_prob=-20.0) == pytest.approx(20.0)


# --------------------------------------------------------------------------- cost


def test_macs_linear():
    lin = nn.Linear(10, 20)
    assert macs_per_sample(lin, torch.randn(4, 10)) == 200.0


def test_param_bytes():
    m = nn.Sequential(nn.Linear(10, 20), nn.BatchNorm1d(20))
    params = (10 * 20 + 20 + 20 + 20) * 4
    assert param_bytes(m, buffers=False) == params
    assert param_bytes(m) == params + (20 + 20) * 4 + 8  # running mean/var float32, num_batches int64
    assert param_bytes(m.half(), buffers=False) == params // 2


def test_latency_and_threads():
    calls = []
    out = latency(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(out["all"]) == 3 and out["median_s"] >= 0
    before = torch.get_num_threads()
    with pinned_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_peak_memory_cpu():
    n = 1_000_000  # 4 MB float32

    def fn():
        a = torch.ones(n)
        b = a + 1
        del a
        c = b * 2
        return c

    peak = peak_memory(fn)
    assert 8e6 <= peak < 9e6  # two 4 MB tensors live at once, never three


# --------------------------------------------------------------------------- evaluation pieces


def test_frechet_from_stats_pca_basis_and_per_class():
    from effdiff.metrics import fd_per_class, frechet_from_stats, gaussian_stats, pca_basis
    a = torch.randn(300, 5, generator=_gen(11), dtype=torch.float64)
    b = torch.randn(300, 5, generator=_gen(12), dtype=torch.float64) * 2 + 1
    assert frechet_from_stats(*gaussian_stats(a), *gaussian_stats(b)) == pytest.approx(frechet_distance(a, b))
    # FD is invariant under a full rotation: the PCA basis with k = D gives the pixel FD
    mu, basis = pca_basis(a, components=64)
    assert basis.shape == (5, 5)
    assert frechet_distance((a - mu) @ basis, (b - mu) @ basis) == pytest.approx(frechet_distance(a, b), rel=1e-9)
    assert pca_basis(a, components=2)[1].shape == (5, 2)
    la, lb = torch.arange(300) % 3, torch.arange(300) % 3
    mean, per = fd_per_class(a, la, b, lb)
    assert len(per) == 3 and mean == pytest.approx(sum(per) / 3)
    assert per[0] == pytest.approx(frechet_distance(a[la == 0], b[lb == 0]))
    _, per = fd_per_class(a, la, b[lb < 2], lb[lb < 2])
    assert per[2] is None
    with pytest.raises(ValueError, match="feature sizes"):
        frechet_from_stats(*gaussian_stats(a), *gaussian_stats(b[:, :3]))


def test_memorization_scores_on_synthetic_points():
    from effdiff.metrics import copy_ratio, memorization, nn_distances
    train = torch.randn(200, 1, 4, 4, generator=_gen(13)) * 3
    held = torch.randn(100, 1, 4, 4, generator=_gen(14)) * 3
    control = torch.randn(100, 1, 4, 4, generator=_gen(15)) * 3
    d = nn_distances(train[:5], train, k=2)
    assert torch.all(d[:, 0] < 1e-5) and torch.all(d[:, 1] > 0.1)     # matrix-product distances: ~1e-7 at 0
    assert torch.all(copy_ratio(train[:5], train) < 1e-5)
    copies = memorization(train[:100], train[:100], held, control, train)
    fresh = memorization(control, train[:100], held, control, train)
    assert copies["mem_asymmetry"] < 1e-5 and copies["mem_copy_fraction"] == 1.0 and copies["mem_closer_than_p5"] == 1.0
    assert fresh["mem_asymmetry"] == pytest.approx(fresh["mem_asymmetry_real"])
    assert 0.8 < fresh["mem_asymmetry"] < 1.2 and fresh["mem_copy_fraction"] < 0.1
    with pytest.raises(ValueError, match="equal size"):
        memorization(control, train[:50], held, control, train)
    with pytest.raises(ValueError, match="NaN"):
        nn_distances(torch.full((2, 3), float("nan")), train.flatten(1)[:, :3])
