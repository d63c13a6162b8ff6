"""Model kinds: a checkpoint's metadata names its kind (``meta["kind"]``: plain, student, prior, latent, video)
and the kind's builder turns the tensors and metadata into a model, so loading never branches on
model type (EDM's habit of checkpoints that name their class). A kind registers with ``@register``;
the built-in kinds live with their wrappers and are imported the first time a checkpoint names them.

    den = kinds.from_checkpoint("runs/digits-unet/model")      # what ``zoo.load`` does for a name
"""
from __future__ import annotations

import importlib
from typing import Callable

from . import assets, checkpoint as ckpt
from .denoisers import Denoiser, EDMDenoiser
from .process import from_config

Builder = Callable[[dict, dict, str], object]        # (tensors, meta, where) -> model

KINDS: dict[str, Builder] = {}
#: kind -> install(meta, where) -> the metadata keys ``zoo.install`` records beside the file's own
INSTALL: dict[str, Callable[[dict, str], dict]] = {}
#: built-in kinds registered by modules of higher layers, imported when a checkpoint first names them
BUILTIN = {"student": "effdiff.distill.student", "prior": "effdiff.training.priorgrad", "latent": "effdiff.latent.zoo",
           "video": "effdiff.video.sampling"}


def register(name: str, install: Callable[[dict, str], dict] | None = None):
    """Decorator: ``@register("student") def build(tensors, meta, where) -> model``; ``install(meta, where)``
    returns metadata the zoo records when it installs a file of this kind (a latent model's autoencoder)."""
    def deco(fn: Builder) -> Builder:
        KINDS[name] = fn
        if install is not None:
            INSTALL[name] = install
        return fn
    return deco


def install_meta(meta: dict, where: str) -> dict:
    """The keys a zoo install adds to ``meta`` for its kind (``{}`` for most kinds)."""
    kind = kind_of(meta, where)
    get(kind, where)
    return INSTALL[kind](meta, where) if kind in INSTALL else {}


def names() -> list[str]:
    """Every kind a checkpoint may name."""
    return sorted(set(KINDS) | set(BUILTIN))


def kind_of(meta: dict, where: str = "model") -> str:
    """``meta["kind"]``, or for files written before kinds were recorded, the kind their keys imply. The
    kind is not part of the pinned config (old files gain it without new hashes), so a recorded kind that
    contradicts what the keys imply (``plain`` on a student's file) is refused."""
    implied = implied_kind(meta)
    recorded = meta.get("kind") if meta.get("format", ckpt.MODEL_FORMAT) == ckpt.MODEL_FORMAT else None
    if recorded is None:
        return implied
    if implied != "plain" and recorded != implied:
        raise ckpt.CheckpointError(f"{where}: names model kind {recorded!r}, but its metadata is a {implied!r} export")
    return recorded


def implied_kind(meta: dict) -> str:
    """The kind a model export's keys imply: a student, a PriorGrad model, a latent model, else plain."""
    if "student" in meta:
        return "student"
    if "prior" in meta:
        return "prior"
    if meta.get("task") == "diffusion" and (meta.get("latent") is not None or is_latent_data(meta.get("data"))):
        return "latent"
    if meta.get("task") == "video":
        return "video"
    return "plain"


def is_latent_data(name) -> bool:
    from .data import LATENT_DATASETS
    return name in LATENT_DATASETS


def get(name: str, where: str = "model") -> Builder:
    """The builder of kind ``name`` (``CheckpointError`` naming the known kinds for an unknown one)."""
    if name not in KINDS and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in KINDS:
        raise ckpt.CheckpointError(f"{where}: unknown model kind {name!r}; known: {', '.join(names())}")
    return KINDS[name]


def check_config(meta: dict, where: str) -> None:
    """The metadata's conditioning agrees with the network config that the tensors are checked against."""
    if meta["task"] != "diffusion":
        return
    k_meta, k_net = meta.get("num_classes", 0), meta["model"].get("num_classes", 0)
    if k_meta != k_net:
        raise ckpt.CheckpointError(f"{where}: num_classes {k_meta!r} does not match the network's {k_net!r}")


def denoiser(net, meta: dict, where: str):
    """The denoiser wrapper ``meta``'s process and prediction name around ``net``."""
    try:
        if meta.get("prediction") == "edm":
            return EDMDenoiser(net, num_classes=meta.get("num_classes", 0))
        return Denoiser(net, from_config(meta["process"]), meta["prediction"], meta.get("num_classes", 0))
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise ckpt.CheckpointError(f"{where}: invalid process/prediction in its metadata: {e}") from None


@register("plain")
def plain(tensors: dict, meta: dict, where: str):
    """A network and its denoiser wrapper (EMA weights, eval mode); the bare network for other tasks."""
    net = assets.network(tensors, meta, where)
    if meta["task"] != "diffusion":
        return net
    den = denoiser(net, meta, where)
    den.meta = meta
    return den.eval()


def load(name: str):
    """A shipped model by name (``assets.names()``), SHA-256 verified: what ``effdiff.zoo.load`` returns."""
    return from_checkpoint(assets.path(name), where=f"zoo model {name!r}", require_sha256=True)


def from_checkpoint(path, where: str | None = None, require_sha256: bool = False):
    """Rebuild a model exported by ``Trainer.export`` (``path`` without suffix) through its kind: a
    denoiser for diffusion models (EMA weights, eval mode), the bare network otherwise. The SHA-256 and
    the config are verified against the tensors (``CheckpointError`` naming the file)."""
    tensors, meta = ckpt.load(path, require_sha256=require_sha256)
    where = where or str(path)
    assets.check_export(meta, where)
    check_config(meta, where)
    return get(kind_of(meta, where), where)(tensors, meta, where)
