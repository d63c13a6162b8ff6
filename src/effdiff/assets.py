"""The shipped files: every zoo model's safetensors + JSON + card under ``WEIGHTS``, read by name.

A base-layer catalogue: names, metadata (``card``) and the bare network of a shipped file
(``load_network``), so that data, metrics and methods reach the evaluation networks and the
autoencoder without the zoo (``effdiff.zoo.load`` builds whole models of every kind on top).
"""
from __future__ import annotations

import json
from pathlib import Path

from . import checkpoint as ckpt
from .errors import UnknownName
from .models import build

WEIGHTS = Path(__file__).parent / "zoo" / "weights"


def names() -> list[str]:
    """Every shipped model name."""
    return sorted(p.stem for p in WEIGHTS.glob("*.json"))


def path(name: str) -> Path:
    """The path stem of a shipped model (``KeyError`` naming the shipped ones for an unknown name)."""
    if name not in names():
        raise UnknownName(f"unknown zoo model {name!r}; shipped models: {', '.join(names()) or '(none)'}")
    return WEIGHTS / name


def card(name: str) -> dict:
    """The model's JSON metadata: architecture, process, and its card (preset, seed, steps, metrics)."""
    return json.loads(ckpt.files(path(name))[1].read_text())


def check_export(meta: dict, where: str) -> None:
    """The metadata keys every effdiff model export has."""
    for key in ("arch", "model", "task"):
        if key not in meta:
            raise ckpt.CheckpointError(f"{where}: metadata lacks {key!r}; not an effdiff model export")


def network(tensors: dict, meta: dict, where: str, prefix_skip: tuple[str, ...] = ()):
    """The network ``meta`` describes with ``tensors`` loaded (eval mode, frozen); tensors whose names
    start with ``prefix_skip`` belong to a wrapper and are left out."""
    try:
        net = build(meta["arch"], meta["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise ckpt.CheckpointError(f"{where}: invalid model config in its metadata: {e}") from None
    own = {k: v for k, v in tensors.items() if not k.startswith(prefix_skip)} if prefix_skip else tensors
    ckpt.load_state(net, own, where=where)
    return net.eval().requires_grad_(False)


def load_network(name: str):
    """The bare network of a shipped model (SHA-256 verified): the classifier, evaluation networks,
    the autoencoder, or a diffusion model's network without its denoiser wrapper."""
    where = f"zoo model {name!r}"
    tensors, meta = ckpt.load(path(name), require_sha256=True)
    check_export(meta, where)
    return network(tensors, meta, where)
