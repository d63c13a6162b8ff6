import math

import pytest
import torch

from effdiff.data import TOY, Checkerboard, GaussianMixture, digits, gmm8, toy, toy_names


# --------------------------------------------------------------------------- digits


def _splits(load, sizes, side):
    """Load train/test/all, check their shapes [N, 1, side, side], dtypes and the [-1, 1] range."""
    out = [load(s) for s in ("train", "test", "all")]
    for (x, y), n in zip(out, sizes):
        assert x.shape == (n, 1, side, side) and x.dtype == torch.float32 and y.dtype == torch.long
        assert x.min() == -1.0 and x.max() == 1.0
    return out


def test_digits_shapes_range_and_split_sizes():
    (x, y), (xt, yt), (xa, ya) = _splits(digits, (1437, 360, 1797), 8)
    assert set(yt.tolist()) == set(range(10))
    # stratified: each class is ~20% test
    counts = torch.bincount(yt, minlength=10).float() / torch.bincount(ya, minlength=10).float()
    assert ((counts - 0.2).abs() < 0.02).all()


def test_digits_train_test_disjoint_and_deterministic():
    x, _ = digits("train")
    xt, _ = digits("test")
    xa, _ = digits("all")
    # no image index appears in both: count distinct rows of all == train + test
    assert len(x) + len(xt) == len(xa)
    together = torch.cat([x, xt]).flatten(1)
    assert torch.equal(torch.unique(together, dim=0), torch.unique(xa.flatten(1), dim=0))
    train_set = {tuple(r.tolist()) for r in x.flatten(1)}
    test_set = {tuple(r.tolist()) for r in xt.flatten(1)}
    all_set = {tuple(r.tolist()) for r in xa.flatten(1)}
    assert len(all_set) == len(xa)  # sklearn digits has no duplicate images ...
    assert not train_set & test_set  # ... so disjoint content means disjoint samples
    assert torch.equal(digits("test")[0], xt)


def test_digits_unknown_split():
    with pytest.raises(ValueError, match="split"):
        digits("validation")


# --------------------------------------------------------------------------- toys


def _grid(lo, hi, n):
    g = torch.linspace(lo, hi, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], 1), ((hi - lo) / (n - 1)) ** 2


def test_gmm_log_prob_integrates_to_one():
    pts, cell = _grid(-4, 4, 401)
    total = (gmm8().log_prob(pts).exp() * cell).sum()
    assert abs(float(total) - 1.0) < 1e-3
    # noisy marginal also integrates to 1
    pts, cell = _grid(-6, 6, 401)
    total = (gmm8().log_prob(pts, sigma=0.5).exp() * cell).sum()
    assert abs(float(total) - 1.0) < 1e-3


def test_gmm_moments_match_samples():
    g = gmm8()
    s = g.sample(40000, generator=torch.Generator().manual_seed(0)).double()
    assert s.shape == (40000, 2)
    assert torch.allclose(s.mean(0), g.mean, atol=0.05)
    assert torch.allclose(torch.cov(s.T), g.cov, atol=0.08)
    # 8 points on radius 2: cov = (r^2/2 + std^2) I
    assert torch.allclose(g.cov, (2.0 + 0.04) * torch.eye(2, dtype=torch.float64), atol=1e-12)


def test_checkerboard_normalised_and_support():
    cb = toy("checkerboard")
    pts, cell = _grid(-2.5, 2.5, 501)
    total = (cb.log_prob(pts).exp() * cell).sum()
    assert abs(float(total) - 1.0) < 0.02
    s = cb.sample(5000, generator=torch.Generator().manual_seed(1))
    lp = cb.log_prob(s)
    assert torch.isfinite(lp).all() and torch.allclose(lp, torch.full_like(lp, -math.log(8.0)))
    assert cb.log_prob(torch.tensor([[0.5, -0.5], [3.0, 0.0]])).isinf().all()  # white square, outside


def test_toy_registry():
    assert set(toy_names()) == set(TOY) >= {"gmm", "checkerboard"}
    assert isinstance(toy("gmm"), GaussianMixture) and isinstance(toy("checkerboard"), Checkerboard)
    with pytest.raises(ValueError, match="checkerboard"):
        toy("moons")


def test_gmm_bad_input():
    with pytest.raises(ValueError):
        GaussianMixture([1.0, 1.0], [[0.0, 0.0]], [1.0])
    with pytest.raises(ValueError, match="features"):
        gmm8().log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        gmm8().denoise(torch.full((2, 2), float("nan")), 1.0)


# --------------------------------------------------------------------------- exact denoiser


def test_denoise_single_component_closed_form():
    mu = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    g = GaussianMixture([1.0], mu, [0.7])
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.1, 0.5, 1.0, 3.0, 10.0], dtype=torch.float64)
    expect = mu + 0.49 / (0.49 + sigma[:, None] ** 2) * (x - mu)
    assert torch.allclose(g.denoise(x, sigma), expect, atol=1e-12)
    assert torch.allclose(g.denoise(x, 0.0), x)


def test_denoise_matches_numerical_bayes_on_1d_grid():
    g = GaussianMixture([0.2, 0.5, 0.3], [[-2.0], [0.5], [3.0]], [0.3, 0.6, 0.2])
    x0 = torch.linspace(-8, 8, 20001, dtype=torch.float64)  # prior grid
    prior = g.log_prob(x0[:, None])
    for sigma in (0.05, 0.4, 1.5, 6.0):
        x = torch.tensor([-3.0, -1.0, 0.0, 1.2, 2.5, 4.0], dtype=torch.float64)
        loglik = -0.5 * ((x[:, None] - x0[None, :]) / sigma) ** 2
        w = torch.softmax(prior[None, :] + loglik, dim=1)
        expect = (w * x0[None, :]).sum(1)
        got = g.denoise(x[:, None], sigma)[:, 0]
        assert torch.allclose(got, expect, atol=1e-6), (sigma, got, expect)


def test_denoise_matches_importance_sampling_2d_and_image_shapes():
    g = gmm8()
    gen = torch.Generator().manual_seed(3)
    prior = g.sample(200000, generator=gen).double()
    x = torch.tensor([[1.0, 1.0], [-0.3, 1.8]], dtype=torch.float64)
    sigma = 0.8
    logw = -0.5 * ((x[:, None, :] - prior[None]) ** 2).sum(-1) / sigma**2  # [2, N]
    expect = (torch.softmax(logw, 1)[..., None] * prior[None]).sum(1)
    assert torch.allclose(g.denoise(x, sigma), expect, atol=0.02)
    # any d, x [B, ...] flattened; sigma per sample; dtype preserved
    gi = GaussianMixture([0.5, 0.5], torch.randn(2, 12, generator=gen), [0.5, 1.0])
    xi = torch.randn(4, 3, 2, 2, generator=gen)
    out = gi.denoise(xi, torch.tensor([0.1, 1.0, 5.0, 50.0]))
    assert out.shape == xi.shape and out.dtype == torch.float32
    # very large sigma -> the mixture mean
    assert torch.allclose(out[3].flatten().double(), gi.mean, atol=0.05)


def test_score_is_gradient_of_noisy_log_prob():
    g = gmm8()
    x = torch.tensor([[0.3, 1.1], [-1.5, -0.2]], dtype=torch.float64, requires_grad=True)
    g.log_prob(x, sigma=0.6).sum().backward()
    assert torch.allclose(g.score(x.detach(), 0.6), x.grad, atol=1e-10)


# --------------------------------------------------------------------------- MNIST


def test_mnist_shapes_range_split_and_balance():
    from effdiff.data import mnist
    (x, y), (xt, yt), (xa, _) = _splits(mnist, (4000, 1000, 5000), 28)
    assert torch.bincount(y, minlength=10).tolist() == [400] * 10
    assert torch.bincount(yt, minlength=10).tolist() == [100] * 10
    # disjoint, together all 5000, and fixed across calls
    rows = lambda t: {tuple(r.tolist()) for r in (t.flatten(1) * 127.5).round().to(torch.int16)}  # noqa: E731
    assert not rows(x) & rows(xt)
    assert len(rows(x) | rows(xt)) == len(rows(xa))
    assert torch.equal(mnist("test")[0], xt)
    with pytest.raises(ValueError, match="split"):
        mnist("val")


def test_digits_style_maps_mnist_to_the_digits_format():
    from effdiff.data import digits_style, mnist
    x, _ = mnist("test")
    d = digits_style(x[:50])
    assert d.shape == (50, 1, 8, 8)
    # counts of ink pixels in 4x4 blocks: k/8 - 1 for integers k in 0..16, like digits()
    k = (d + 1) * 8
    assert torch.allclose(k, k.round()) and k.min() >= 0 and k.max() <= 16
    assert (d == -1).float().mean() > 0.3            # background blocks exist
    with pytest.raises(ValueError, match="28"):
        digits_style(torch.zeros(2, 1, 8, 8))


def test_mnist_test_set_loader(tmp_path):
    from effdiff.data import MNIST_TEST_DIR, mnist_test
    with pytest.raises(FileNotFoundError, match="development"):
        mnist_test(tmp_path)
    if not MNIST_TEST_DIR.is_dir():
        pytest.skip("../shared/data/mnist absent (development-only data)")
    x, y = mnist_test()
    assert x.shape == (10000, 1, 28, 28) and x.min() == -1.0 and x.max() == 1.0
    assert torch.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_dataset_registry():
    from effdiff.data import dataset, digits
    assert torch.equal(dataset("digits", "test")[0], digits("test")[0])
    with pytest.raises(ValueError, match="unknown dataset"):
        dataset("cifar")
