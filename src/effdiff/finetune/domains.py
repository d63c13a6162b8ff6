"""Target domains generated from the embedded digits: what a fine-tune adapts a model to.

    x, y = domain("thick", "train")      # digits train split with strokes thickened by dilation

Every domain is a pure function of the source images (values in [-1, 1], background -1), so the
target's held-out split is the source's held-out split transformed the same way.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def inverted(x: torch.Tensor) -> torch.Tensor:
    """White background, dark strokes: x -> -x."""
    return -x


def thick(x: torch.Tensor) -> torch.Tensor:
    """Strokes thickened by grey dilation with a 2x2 structuring element (morphology)."""
    a = x.numpy()
    out = ndimage.grey_dilation(a, footprint=np.ones((1, 1, 2, 2), bool))
    return torch.from_numpy(np.ascontiguousarray(out))


def thin(x: torch.Tensor) -> torch.Tensor:
    """Strokes thinned by grey erosion with a 2x1 (vertical) element; never below the background."""
    out = ndimage.grey_erosion(x.numpy(), footprint=np.ones((1, 1, 2, 1), bool))
    return torch.from_numpy(np.ascontiguousarray(out))


def rotated(x: torch.Tensor) -> torch.Tensor:
    """Rotated by 90 degrees counter-clockwise."""
    return torch.rot90(x, 1, dims=(-2, -1)).contiguous()


def identity(x: torch.Tensor) -> torch.Tensor:
    """The source domain itself (control methods learn a condition, not a domain)."""
    return x


DOMAINS = {"identity": identity, "inverted": inverted, "thick": thick, "thin": thin, "rotated": rotated}


def few_shot(y: torch.Tensor, n_per_class: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``n_per_class`` images of every class (a fixed draw per seed)."""
    gen = torch.Generator().manual_seed(seed)
    picks = [(y == c).nonzero().flatten() for c in range(int(y.max()) + 1)]
    if any(len(p) < n_per_class for p in picks):
        raise ValueError(f"a class has fewer than {n_per_class} images")
    return torch.cat([p[torch.randperm(len(p), generator=gen)[:n_per_class]] for p in picks]).sort().values


def domain(name: str, split: str = "train", dataset: str = "digits", n_per_class: int | None = None):
    """(x, y) of ``dataset``'s ``split`` mapped into domain ``name`` (optionally a few-shot subset)."""
    from .. import data
    if name not in DOMAINS:
        raise KeyError(f"unknown target domain {name!r}; known: {', '.join(DOMAINS)}")
    x, y = data.dataset(dataset, split)
    if n_per_class is not None:
        idx = few_shot(y, n_per_class)
        x, y = x[idx], y[idx]
    return DOMAINS[name](x).float(), y
