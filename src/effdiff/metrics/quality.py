"""Sample-quality metrics in a classifier's feature space.

Fréchet distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule
Converge to a Local Nash Equilibrium", the FID formula), k-NN precision/recall
(Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
Generative Models"), class accuracy, per-class FD, a feature-free FD in principal components
of the reference images, and trajectory error against a reference sampler.
The feature network is any module with `forward(x) -> logits [B, C]` and
`features(x) -> [B, F]` (the zoo's evaluation networks). `metrics.score` combines these
against held-out data; see docs/evaluation.md.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "frechet_distance",
    "gaussian_stats",
    "frechet_from_stats",
    "fd_per_class",
    "pca_basis",
    "class_features",
    "class_accuracy",
    "precision_recall",
    "trajectory_error",
    "Scorer",
]


def _feats64(feats, name: str) -> torch.Tensor:
    """Check a feature matrix [N, F] (tensor or array) and return it as float64 CPU tensor."""
    f = torch.as_tensor(np.asarray(feats) if not isinstance(feats, torch.Tensor) else feats)
    f = f.detach().to("cpu", torch.float64)
    if f.ndim != 2:
        raise ValueError(f"{name} must have shape [N, F], got {tuple(f.shape)}")
    if f.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples, got {f.shape[0]}")
    if not torch.isfinite(f).all():
        raise ValueError(f"{name} contains NaN or inf")
    return f


def _mean_cov(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample mean [F] and unbiased covariance [F, F]."""
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (f.shape[0] - 1)


def _psd_sqrt(a: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric PSD matrix via eigh (negative eigenvalues clipped)."""
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def gaussian_stats(feats) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [F] and unbiased covariance [F, F] of a feature matrix [N, F], float64."""
    return _mean_cov(_feats64(feats, "feats"))


def frechet_from_stats(mu_a, s_a, mu_b, s_b) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two Gaussians (Heusel et al. 2017).

    The trace of (S_a S_b)^(1/2) equals the trace of (S_a^(1/2) S_b S_a^(1/2))^(1/2), a
    symmetric PSD matrix, so it is computed from real eigenvalues in float64: no complex
    sqrtm and no imaginary residue to discard.
    """
    mu_a, s_a, mu_b, s_b = (torch.as_tensor(t, dtype=torch.float64) for t in (mu_a, s_a, mu_b, s_b))
    if mu_a.shape != mu_b.shape or s_a.shape != s_b.shape or s_a.shape != (len(mu_a), len(mu_a)):
        raise ValueError(f"feature sizes differ: means {tuple(mu_a.shape)} vs {tuple(mu_b.shape)}, "
                         f"covariances {tuple(s_a.shape)} vs {tuple(s_b.shape)}")
    root_a = _psd_sqrt(s_a)
    m = root_a @ s_b @ root_a
    tr_covmean = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    fd = (mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * tr_covmean
    return max(float(fd), 0.0)


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussian fits of two feature matrices [N, F] (Heusel et al. 2017)."""
    a, b = _feats64(feats_a, "feats_a"), _feats64(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    return frechet_from_stats(*_mean_cov(a), *_mean_cov(b))


def fd_per_class(feats, labels, ref_feats, ref_labels) -> tuple[float, list[float | None]]:
    """Class-conditional FD: for each class c, FD(feats[labels == c], ref_feats[ref_labels == c]).

    Returns (mean over the classes present in both, per-class list indexed by class, None where
    either side has fewer than 2 samples).
    """
    labels, ref_labels = torch.as_tensor(labels).reshape(-1), torch.as_tensor(ref_labels).reshape(-1)
    if len(labels) != len(feats) or len(ref_labels) != len(ref_feats):
        raise ValueError("labels must have one entry per feature row")
    per = []
    for c in range(int(max(labels.max(), ref_labels.max())) + 1):
        a, b = feats[labels == c], ref_feats[ref_labels == c]
        per.append(frechet_distance(a, b) if len(a) >= 2 and len(b) >= 2 else None)
    got = [v for v in per if v is not None]
    if not got:
        raise ValueError("no class has 2 or more samples on both sides")
    return sum(got) / len(got), per


def pca_basis(x: torch.Tensor, components: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [D], top principal directions [D, k]) of images x [N, ...], k = min(components, D), float64.

    With k = D the projection is a rotation, and FD in it equals the pixel-space FD.
    """
    f = _feats64(x.reshape(len(x), -1), "x")
    mu = f.mean(0)
    _, vecs = torch.linalg.eigh((f - mu).T @ (f - mu))   # ascending eigenvalues
    k = min(components, f.shape[1])
    return mu, vecs[:, -k:].flip(1)


@torch.no_grad()
def class_features(classifier: torch.nn.Module, x: torch.Tensor, batch_size: int = 512):
    """Run the feature classifier in eval mode: returns (features [N, F], logits [N, C]) on CPU, float32.

    The classifier's training flag is restored afterwards.
    """
    if not hasattr(classifier, "features"):
        raise TypeError("classifier must have a .features(x) method returning [B, F] penultimate features")
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError("x must be a tensor [N, ...]")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    param = next(iter(classifier.parameters()), None) if isinstance(classifier, torch.nn.Module) else None
    device = param.device if param is not None else x.device
    was_training = getattr(classifier, "training", False)
    if isinstance(classifier, torch.nn.Module):
        classifier.eval()
    feats, logits = [], []
    try:
        for chunk in x.split(batch_size):
            chunk = chunk.to(device, torch.float32)
            feats.append(classifier.features(chunk).float().cpu())
            logits.append(classifier(chunk).float().cpu())
    finally:
        if isinstance(classifier, torch.nn.Module):
            classifier.train(was_training)
    return torch.cat(feats), torch.cat(logits)


def class_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples whose argmax logit equals the label they were conditioned on."""
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"need logits [N, C] and labels [N], got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    return float((logits.argmax(1).cpu() == labels.cpu()).double().mean())


def _dist_blocks(a: torch.Tensor, b: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Euclidean distances from rows of a to rows of b, yielded as [chunk, len(b)] blocks."""
    for i in range(0, a.shape[0], chunk):
        yield torch.cdist(a[i : i + chunk], b)


def _knn_radii(f: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set (self excluded)."""
    radii = []
    for block in _dist_blocks(f, f):
        radii.append(block.kthvalue(k + 1, dim=1).values)  # k+1: the point itself is at 0
    return torch.cat(radii)


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Fraction of `points` inside at least one ball (centre, radius)."""
    hit = [(block <= radii[None, :]).any(1) for block in _dist_blocks(points, centres)]
    return float(torch.cat(hit).double().mean())


def precision_recall(real_feats, fake_feats, k: int = 3) -> tuple[float, float]:
    """k-NN manifold precision and recall (Kynkäänniemi et al. 2019).

    Each set's manifold is the union of balls around its points with radius the distance
    to the k-th nearest neighbour. Precision: fraction of fake points inside the real
    manifold. Recall: fraction of real points inside the fake manifold.
    """
    real, fake = _feats64(real_feats, "real_feats"), _feats64(fake_feats, "fake_feats")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} vs {fake.shape[1]}")
    if not 1 <= k < min(len(real), len(fake)):
        raise ValueError(f"k must be in [1, {min(len(real), len(fake)) - 1}], got {k}")
    precision = _coverage(fake, real, _knn_radii(real, k))
    recall = _coverage(real, fake, _knn_radii(fake, k))
    return precision, recall


def trajectory_error(x: torch.Tensor, x_ref: torch.Tensor) -> float:
    """Mean over samples of the per-sample RMSE: mean_b sqrt(mean_{i} (x[b,i] - x_ref[b,i])^2).

    Used to compare a fast sampler's outputs with a reference sampler started from the
    same noise; computed in float64.
    """
    if x.shape != x_ref.shape or x.ndim < 1:
        raise ValueError(f"x and x_ref must have the same shape [B, ...], got {tuple(x.shape)} and {tuple(x_ref.shape)}")
    diff = (x.detach().double().cpu() - x_ref.detach().double().cpu()).reshape(x.shape[0], -1)
    return float(diff.pow(2).mean(1).sqrt().mean())


class Scorer:
    """Scores samples against a fixed real reference set in a classifier's feature space.

    The real features are computed once at construction. `score(x, labels)` returns a
    dict with "fd", "precision", "recall" and, when labels are given, "class_acc".
    `metrics.score` is the full protocol (held-out reference, independent network, seeds).
    """

    def __init__(self, classifier: torch.nn.Module, real_x: torch.Tensor, batch_size: int = 512, k: int = 3):
        self.classifier = classifier
        self.batch_size = batch_size
        self.k = k
        self.real_features, _ = class_features(classifier, real_x, batch_size)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) of x under the scorer's classifier."""
        return class_features(self.classifier, x, self.batch_size)

    def score(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        """Quality of samples x: Fréchet distance, precision, recall, and class accuracy if labels."""
        if not torch.isfinite(x).all():
            raise ValueError("samples contain NaN or inf")
        feats, logits = self.features(x)
        precision, recall = precision_recall(self.real_features, feats, self.k)
        out = {"fd": frechet_distance(self.real_features, feats), "precision": precision, "recall": recall}
        if labels is not None:
            out["class_acc"] = class_accuracy(logits, labels)
        return out

    def real_vs_real(self, other_real_x: torch.Tensor) -> float:
        """FD of other real images against the reference: the comparison point at that sample size
        (not a floor: a sampler can score below it, e.g. by copying the reference)."""
        feats, _ = self.features(other_real_x)
        return frechet_distance(self.real_features, feats)

    floor = real_vs_real  # old name, kept for callers; the number is a comparison point, not a bound
