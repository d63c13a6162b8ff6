"""The evaluation protocol (metrics.score): an independent feature network, held-out reference,
memorization, real-vs-real comparison point, shipped reference statistics."""
import statistics

import pytest
import torch

import effdiff as ed
from effdiff.data import MNIST_TEST_DIR, digits, mnist
from effdiff.metrics import reference_stats, score
from effdiff.metrics.reference import compute_reference_stats

KEYS = {"fd", "fd_pixel", "fd_per_class", "fd_per_class_list", "class_acc", "precision", "recall", "mem_asymmetry",
        "mem_asymmetry_real", "mem_copy_fraction", "mem_copy_fraction_real", "mem_closer_than_p5", "real_vs_real_fd",
        "real_vs_real_fd_pixel", "real_vs_real_class_acc"}


@pytest.fixture(scope="module")
def split_scores():
    """Against half of the held-out digits: a copier of training images, the copier plus small
    noise, and the other (real) held-out half, over 5 seeds (bench/protocol.py)."""
    from effdiff.bench.protocol import copier_check
    return copier_check("digits", seeds=range(5))


def _stat(qs, key):
    v = [q[key] for q in qs]
    return statistics.mean(v), statistics.stdev(v)


def test_copier_not_scored_better_than_real_held_out_data(split_scores):
    copier, _ = _stat(split_scores["copier"], "fd")
    held, held_sd = _stat(split_scores["held_out"], "fd")
    assert copier >= held - held_sd, (copier, held, held_sd)
    copier_px, _ = _stat(split_scores["copier"], "fd_pixel")
    held_px, held_px_sd = _stat(split_scores["held_out"], "fd_pixel")
    assert copier_px >= held_px - held_px_sd


def test_memorization_tells_copier_noisy_copier_and_real_data_apart(split_scores):
    c, n, h = (split_scores[k] for k in ("copier", "noisy_copier", "held_out"))
    assert all(q["mem_copy_fraction"] == 1.0 for q in c)                 # every sample is a training image
    assert min(q["mem_copy_fraction"] for q in n) >= 0.1                   # small noise: many still flagged
    assert max(q["mem_copy_fraction"] for q in n) <= 0.9                   # ... but not all: a third rule
    assert max(q["mem_copy_fraction"] for q in h) <= 0.02                  # real unseen digits: (almost) never
    assert all(q["mem_copy_fraction_real"] <= 0.02 for q in h)            # the control agrees
    # nearest-neighbour asymmetry: copies sit closer to the training sample than real data does
    assert _stat(c, "mem_asymmetry")[0] < _stat(h, "mem_asymmetry")[0] - 2 * _stat(h, "mem_asymmetry")[1]
    assert _stat(n, "mem_asymmetry")[0] < _stat(h, "mem_asymmetry")[0] - _stat(h, "mem_asymmetry")[1]
    assert abs(_stat(h, "mem_asymmetry")[0] - 1) < 0.1
    assert _stat(c, "mem_closer_than_p5")[0] > _stat(h, "mem_closer_than_p5")[0]


def test_fd_direction_agrees_within_seed_spread():
    """FD(train subset -> held-out) vs FD(held-out subset -> train subset): the evaluation network
    treats both splits alike (it was trained on neither)."""
    from effdiff.bench.protocol import direction_check
    fwd, back = direction_check("digits", seeds=range(8))
    gap = abs(statistics.mean(fwd) - statistics.mean(back))
    assert gap <= statistics.stdev(fwd) + statistics.stdev(back), (fwd, back)


def test_score_keys_determinism_and_comparison_point():
    xte, yte = digits("test")
    x = xte[:100] + 0.3 * torch.randn(xte[:100].shape, generator=torch.Generator().manual_seed(0))
    q = score(x, yte[:100], dataset="digits", seed=3)
    assert KEYS <= set(q)
    assert len(q["fd_per_class_list"]) == 10
    assert q == score(x, yte[:100], dataset="digits", seed=3)
    assert q["fd"] > q["real_vs_real_fd"]               # noisy digits are worse than real training digits
    assert 0.85 <= q["real_vs_real_class_acc"] <= 1.0
    with pytest.raises(ValueError, match="samples must be"):
        score(torch.zeros(10, 1, 28, 28), dataset="digits")
    with pytest.raises(ValueError, match="labels"):
        score(x, torch.full((100,), 10), dataset="digits")
    with pytest.raises(ValueError, match="unknown dataset"):
        score(x, dataset="cifar")


@pytest.mark.parametrize("dataset", ["digits", "mnist"])
def test_shipped_reference_stats_match_recomputation(dataset):
    mu, cov, meta = reference_stats(dataset)
    mu2, cov2, meta2 = compute_reference_stats(dataset)
    assert torch.allclose(mu, mu2, atol=1e-5) and torch.allclose(cov, cov2, atol=1e-5)
    assert meta == meta2                 # same held-out images, same evaluation network file


@pytest.mark.parametrize("name", ["digits-eval", "mnist-eval"])
def test_eval_nets_small_independent_and_accurate(name):
    from effdiff.training.evalnet import RECIPES, accuracy, check_data
    assert (ed.zoo.WEIGHTS / f"{name}.safetensors").stat().st_size < 5 * 2**20
    card = ed.zoo.card(name)["card"]
    assert "t10k" in card["trained_on"]
    x, y = check_data(RECIPES[name])       # all of the scored dataset: never trained on
    acc = accuracy(ed.zoo.load(name), x, y)
    assert acc == pytest.approx(card["metrics"][f"accuracy_{RECIPES[name].dataset}_all_unseen"], abs=1e-6)
    assert acc >= (0.93 if name == "digits-eval" else 0.97)


@pytest.mark.skipif(not MNIST_TEST_DIR.is_dir(), reason="../shared/data/mnist absent (development-only data)")
@pytest.mark.parametrize("name", ["digits-eval", "mnist-eval"])
def test_eval_nets_trained_on_the_mnist_test_set(name):
    """Provenance: the shipped card's training-data hash is the 10k MNIST test set in that format."""
    from effdiff.training.evalnet import RECIPES, EvalNetRecipe, sha256_of, training_data
    card = ed.zoo.card(name)["card"]
    recipe = EvalNetRecipe(**card["recipe"])
    assert recipe.name == RECIPES[name].name and recipe.steps == RECIPES[name].steps
    assert sha256_of(training_data(recipe)[0]) == card["metrics"]["training_data_sha256"]


def test_mnist_score_training_images_and_degraded_ones():
    """MNIST through the same protocol: class-balanced training images are recognised, flagged as
    copies and score near their comparison point; blurred or noisy digits score worse."""
    from effdiff.metrics.evaluation import balanced_sample
    x, y = mnist("train")
    i = balanced_sample(y, torch.full((10,), 20), torch.Generator().manual_seed(0))
    x, y = x[i], y[i]
    q = score(x, y, dataset="mnist", seed=0)
    assert q["class_acc"] >= 0.95 and q["mem_copy_fraction"] == 1.0 and q["mem_copy_fraction_real"] == 0.0
    assert q["fd"] < 2 * q["real_vs_real_fd"]
    blur = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    noisy = (x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    for bad in (blur, noisy):
        qb = score(bad, y, dataset="mnist", seed=0, real_vs_real=False)
        assert qb["fd"] > 3 * q["real_vs_real_fd"] and qb["fd_pixel"] > q["real_vs_real_fd_pixel"]
        assert qb["fd_per_class"] > q["real_vs_real_fd_per_class"]
