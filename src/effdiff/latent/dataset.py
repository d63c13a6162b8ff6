"""The latent datasets (``data.LATENT_DATASETS``): a zoo autoencoder's scaled posterior means
``scale * E[z|x]`` of an image dataset, encoded once per process and split (the cache is keyed by the
autoencoder's SHA-256). Importing this module registers them with ``data.register_dataset``."""
from __future__ import annotations

from functools import lru_cache, partial

import torch

from .. import assets, data
from .encode import encode
from .zoo import autoencoder


@lru_cache(maxsize=4)
def _arrays(name: str, split: str, ae_sha: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    spec = data.LATENT_DATASETS[name]
    ae, scale, _ = autoencoder(spec["autoencoder"], f"dataset {name!r}")
    with torch.inference_mode():
        x, y = data.dataset(spec["data"], split)
        return encode(ae, x, scale).contiguous(), y


def load(name: str, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Latent dataset ``name``: (x [N, c, h, w] float32, y [N])."""
    try:
        sha = assets.card(data.LATENT_DATASETS[name]["autoencoder"]).get("sha256", {}).get("tensors")
    except KeyError:
        sha = None                       # autoencoder() raises the clear error
    x, y = _arrays(name, split, sha)
    return x.clone(), y.clone()


for _name in data.LATENT_DATASETS:
    data.register_dataset(_name, partial(load, _name))
