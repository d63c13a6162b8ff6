"""`score()`: sample quality against held-out data, the way docs/evaluation.md describes.

    q = ed.metrics.score(x, labels, dataset="digits", seed=0)
    q["fd"], q["real_vs_real_fd"], q["mem_asymmetry"]

- `fd`: Fréchet distance (Heusel et al. 2017) to the held-out split, in the features of an
  evaluation network trained on neither diffusion split (the 10k MNIST test set).
- `fd_pixel`: the same distance with no network, in the held-out images' top-64 principal
  components (for 8x8 digits: all 64 pixels, so exactly the pixel FD).
- `fd_per_class`: mean over classes of the FD between samples and held-out images of that class.
- `precision`, `recall` (Kynkäänniemi et al. 2019, k = 3) and `class_acc` in the same network.
- `real_vs_real_*`: the same numbers for a class-balanced sample of *training* images with the
  samples' label counts — the comparison point at the same n (not a floor).
- `mem_*`: memorization (metrics/memorization.py), with the real-data control beside it.

`seed` draws the training sample, the held-out halves used by memorization and the real-vs-real
sample; scoring the same x with the same seed gives the same numbers.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from .memorization import memorization
from .quality import (class_accuracy, class_features, fd_per_class, frechet_distance, frechet_from_stats,
                      gaussian_stats, pca_basis, precision_recall)

__all__ = ["Evaluation", "evaluation", "score", "balanced_sample", "PIXEL_COMPONENTS"]

PIXEL_COMPONENTS = 64


def balanced_sample(labels: torch.Tensor, counts: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Indices into `labels` drawing counts[c] items of each class c without replacement."""
    picks = []
    for c, k in enumerate(counts.tolist()):
        pool = (labels == c).nonzero().flatten()
        if k > len(pool):
            raise ValueError(f"class {c}: asked for {k} real images but only {len(pool)} are available")
        picks.append(pool[torch.randperm(len(pool), generator=gen)[:k]])
    return torch.cat(picks) if picks else torch.zeros(0, dtype=torch.long)


class Evaluation:
    """Held-out reference, training split and evaluation network of one dataset; `score` samples.

    Defaults: `data.dataset(dataset, "test")` as reference, `"train"` as training split, the zoo's
    `EVAL_NETS[dataset]` network and its shipped reference statistics. Any of them can be
    replaced (tests score a split of the held-out data against the other half).
    """

    def __init__(self, dataset: str = "digits", net=None, reference=None, train=None, k: int = 3):
        from .. import assets, data
        from .reference import eval_net_name, reference_stats
        self.dataset, self.k = dataset, k
        self.net = net if net is not None else assets.load_network(eval_net_name(dataset))
        self.ref_x, self.ref_y = reference if reference is not None else data.dataset(dataset, "test")
        self.train_x, self.train_y = train if train is not None else data.dataset(dataset, "train")
        self.ref_feats, _ = class_features(self.net, self.ref_x)
        shipped = net is None and reference is None
        self.ref_stats = reference_stats(dataset)[:2] if shipped else gaussian_stats(self.ref_feats)
        self.pix_mu, self.pix_basis = pca_basis(self.ref_x, PIXEL_COMPONENTS)
        self.ref_pix = self.pixels(self.ref_x)
        self.num_classes = int(self.ref_y.max()) + 1

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Images [N, ...] -> coordinates [N, k] in the held-out images' principal components."""
        return (x.reshape(len(x), -1).double() - self.pix_mu) @ self.pix_basis

    def _check(self, x: torch.Tensor, labels) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != tuple(self.ref_x.shape[1:]):
            raise ValueError(f"{self.dataset} samples must be [N, {', '.join(map(str, self.ref_x.shape[1:]))}], "
                             f"got {tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if len(x) < 2 * self.k:
            raise ValueError(f"need at least {2 * self.k} samples, got {len(x)}")
        if not torch.isfinite(x).all():
            raise ValueError("samples contain NaN or inf")
        if labels is not None:
            labels = torch.as_tensor(labels).reshape(-1).long()
            if len(labels) != len(x) or labels.min() < 0 or labels.max() >= self.num_classes:
                raise ValueError(f"labels must be {len(x)} class indices in [0, {self.num_classes})")
        return labels

    def quality(self, x: torch.Tensor, labels=None) -> dict:
        """Distances of x to the held-out reference (no memorization, no comparison point)."""
        feats, logits = class_features(self.net, x)
        by = labels if labels is not None else logits.argmax(1)
        precision, recall = precision_recall(self.ref_feats, feats, self.k)
        per_mean, per = fd_per_class(feats, by, self.ref_feats, self.ref_y)
        out = {"fd": frechet_from_stats(*gaussian_stats(feats), *self.ref_stats),
               "fd_pixel": frechet_distance(self.pixels(x), self.ref_pix),
               "fd_per_class": per_mean, "fd_per_class_list": per, "precision": precision, "recall": recall}
        if labels is not None:
            out["class_acc"] = class_accuracy(logits, labels)
        return out

    def memorization(self, x: torch.Tensor, gen: torch.Generator) -> dict:
        """Memorization of x: T (train) and H (held-out half) of equal class-balanced size; control = other half."""
        half = torch.bincount(self.ref_y, minlength=self.num_classes) // 2
        h_idx = balanced_sample(self.ref_y, half, gen)
        rest = torch.ones(len(self.ref_y), dtype=torch.bool)
        rest[h_idx] = False
        t_idx = balanced_sample(self.train_y, half, gen)
        return memorization(x, self.train_x[t_idx], self.ref_x[h_idx], self.ref_x[rest], self.train_x)

    def real_sample(self, labels, n: int, gen: torch.Generator) -> torch.Tensor:
        """Training images with the samples' label counts (class-balanced when labels is None)."""
        if labels is None:
            counts = torch.full((self.num_classes,), n // self.num_classes)
            counts[: n % self.num_classes] += 1
        else:
            counts = torch.bincount(labels, minlength=self.num_classes)
        idx = balanced_sample(self.train_y, counts, gen)
        return self.train_x[idx], self.train_y[idx]

    def score(self, x: torch.Tensor, labels=None, seed: int = 0, real_vs_real: bool = True) -> dict:
        """Every number of the protocol for samples x [N, C, H, W] conditioned on labels [N] (or None)."""
        labels = self._check(x, labels)
        gen = torch.Generator().manual_seed(seed)
        out = {"dataset": self.dataset, "n": len(x), "seed": seed, **self.quality(x, labels)}
        out.update(self.memorization(x, gen))
        if real_vs_real:
            rx, ry = self.real_sample(labels, len(x), gen)
            rq = self.quality(rx, ry if labels is not None else None)
            out.update({f"real_vs_real_{k}": v for k, v in rq.items() if k != "fd_per_class_list"})
        return out


@lru_cache(maxsize=None)
def evaluation(dataset: str = "digits") -> Evaluation:
    """The default `Evaluation` of a dataset (built once per process)."""
    return Evaluation(dataset)


def score(x: torch.Tensor, labels=None, dataset: str = "digits", seed: int = 0, real_vs_real: bool = True) -> dict:
    """Quality, memorization and the real-vs-real comparison point of samples x (see module docstring)."""
    return evaluation(dataset).score(x, labels, seed=seed, real_vs_real=real_vs_real)
