"""The model zoo: checkpoints trained by this project's own ``effdiff train`` presets on data that
ships with scikit-learn, stored in the package (safetensors + JSON + a card). Nothing downloads.

    den = ed.zoo.load("digits-unet")          # a class-conditional denoiser D(x, sigma, cond)
    clf = ed.zoo.load("digits-classifier")    # the metrics' feature network
"""
from __future__ import annotations

from pathlib import Path

from .. import assets, checkpoint as ckpt
from ..aliases import alias
from ..assets import card, names
from ..io import atomic_write
from .cards import card_markdown
from ..kinds import from_checkpoint, install_meta, kind_of, load as _load

__all__ = ["WEIGHTS", "names", "card", "load", "from_checkpoint", "install", "card_markdown"]


def load(name: str, device=None):
    """A shipped model by name (``names()``), SHA-256 verified, on ``device`` ("cpu", "cuda", ...;
    default the CPU; CUDA asked for and absent is a ``DeviceError``)."""
    if device is None:
        return _load(name)
    from ..device import resolve
    d = resolve(device)
    return _load(name).to(d)


def install(model_path, name: str, extra_metrics: dict | None = None) -> Path:
    """Copy an exported model (``run_dir/model``) into the zoo as ``name`` and write its card
    (``name.md``); ``extra_metrics`` (e.g. the bench's FD) are added to the card's metrics.
    The JSON records the SHA-256 that ``load`` verifies; every file is written atomically."""
    src = Path(model_path)
    tensors, meta = ckpt.load(src)            # validates before installing
    if extra_metrics:
        meta["card"]["metrics"].update(extra_metrics)
    meta.setdefault("kind", kind_of(meta))
    extra = install_meta(meta, str(src))      # a latent model: its autoencoder and scale (header too)
    if extra:
        meta = {**meta, **extra}
        ckpt.save(assets.WEIGHTS / name, tensors, meta)
    else:
        atomic_write(assets.WEIGHTS / f"{name}.safetensors", ckpt.files(src)[0].read_bytes())
        atomic_write(assets.WEIGHTS / f"{name}.json", ckpt.meta_json(meta, ckpt.integrity(tensors, meta)))
    atomic_write(assets.WEIGHTS / f"{name}.md", card_markdown(name, meta))
    return assets.WEIGHTS / name


alias(__name__, assets, "WEIGHTS")     # zoo.WEIGHTS is assets.WEIGHTS
