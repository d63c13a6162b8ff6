"""Shipped reference feature statistics: the held-out split's mean and covariance in the
evaluation network's features, so FD needs no data file (as FID ships Inception statistics).

    mu, cov, meta = reference_stats("mnist")   # zoo/weights/mnist-eval.heldout.safetensors
"""
from __future__ import annotations

import json
from hashlib import sha256
from functools import lru_cache
from pathlib import Path

import torch

#: dataset -> its zoo evaluation network (trained on the 10k MNIST test set; see training/evalnet.py)
EVAL_NETS = {"digits": "digits-eval", "mnist": "mnist-eval"}
REFERENCE_SPLIT = "test"     # the held-out split of data.digits / data.mnist


def eval_net_name(dataset: str) -> str:
    if dataset not in EVAL_NETS:
        raise ValueError(f"unknown dataset {dataset!r} for scoring; known: {', '.join(sorted(EVAL_NETS))}")
    return EVAL_NETS[dataset]


def stats_path(dataset: str) -> Path:
    from .. import assets
    return assets.WEIGHTS / f"{eval_net_name(dataset)}.heldout.safetensors"


def compute_reference_stats(dataset: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(mu [F], cov [F, F], provenance) of the held-out split in the evaluation network's features."""
    from .. import assets, data
    from ..io import sha256_of
    from .quality import class_features, gaussian_stats
    x, _ = data.dataset(dataset, REFERENCE_SPLIT)
    feats, _ = class_features(assets.load_network(eval_net_name(dataset)), x)
    mu, cov = gaussian_stats(feats)
    net_file = assets.WEIGHTS / f"{eval_net_name(dataset)}.safetensors"
    meta = {"dataset": dataset, "split": REFERENCE_SPLIT, "n": len(x), "images_sha256": sha256_of(x),
            "eval_net": eval_net_name(dataset), "eval_net_sha256": sha256(net_file.read_bytes()).hexdigest()}
    return mu, cov, meta


def write_reference_stats(dataset: str) -> Path:
    """Recompute and write the shipped statistics of `dataset` (float64, atomic)."""
    import os
    from safetensors.torch import save_file
    mu, cov, meta = compute_reference_stats(dataset)
    path = stats_path(dataset)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"mu": mu, "cov": cov}, str(tmp), metadata={"effdiff_meta": json.dumps(meta, sort_keys=True)})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    reference_stats.cache_clear()
    return path


@lru_cache(maxsize=None)
def reference_stats(dataset: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The shipped (mu, cov, provenance) of `dataset`'s held-out split."""
    from safetensors import safe_open
    path = stats_path(dataset)
    if not path.is_file():
        raise FileNotFoundError(f"no shipped reference statistics for {dataset!r} at {path}; "
                                f"write them with `python -m effdiff.training.evalnet --stats {dataset}`")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("effdiff_meta", "{}"))
        return f.get_tensor("mu"), f.get_tensor("cov"), meta
