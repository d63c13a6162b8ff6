"""The latent model kind: the ``latent`` block of a model's metadata names the zoo autoencoder, its
scale and the image dataset; ``wrap`` turns the loaded latent denoiser into a ``LatentDenoiser`` and
refuses an autoencoder whose scale differs from the one trained on. Registers kind ``"latent"``."""
from __future__ import annotations

import math

from .. import assets, checkpoint as ckpt
from ..data import LATENT_DATASETS
from ..kinds import plain, register

SCALE_RTOL = 1e-6


def latent_block(meta: dict) -> dict | None:
    """``meta["latent"]`` of a diffusion model, else the one its training data implies
    (``meta["data"]`` being one of ``data.LATENT_DATASETS``), else None."""
    if meta.get("latent") is not None:
        return dict(meta["latent"])
    data = meta.get("data")
    if data not in LATENT_DATASETS:
        return None
    spec = LATENT_DATASETS[data]
    return {"autoencoder": spec["autoencoder"], "data": spec["data"], "dataset": data}


def autoencoder(name: str, where: str = "latent model"):
    """(network, scale, tensors SHA-256) of the zoo autoencoder ``name``."""
    try:
        meta = assets.card(name)
    except KeyError:
        raise ckpt.CheckpointError(f"{where}: its autoencoder {name!r} is not in the zoo "
                                   f"({', '.join(assets.names())})") from None
    if meta.get("task") != "autoencoder" or "scale" not in meta.get("latent_space", {}):
        raise ckpt.CheckpointError(f"{where}: zoo model {name!r} is not an autoencoder with a latent scale")
    return assets.load_network(name), float(meta["latent_space"]["scale"]), meta.get("sha256", {}).get("tensors")


def resolve(meta: dict, where: str, with_autoencoder: bool = False):
    """The full latent block (autoencoder, scale, data, autoencoder_sha256) or None for a pixel model
    (with ``with_autoencoder``: ``(block, network)``); a recorded scale that the autoencoder no longer
    has raises ``CheckpointError``."""
    block = latent_block(meta)
    if block is None:
        return (None, None) if with_autoencoder else None
    ae, scale, sha = autoencoder(block["autoencoder"], where)
    if "scale" in block and not math.isclose(block["scale"], scale, rel_tol=SCALE_RTOL):
        raise ckpt.CheckpointError(f"{where}: trained on latents scaled by {block['scale']}, but zoo autoencoder "
                                   f"{block['autoencoder']!r} has scale {scale}: it is not the autoencoder the "
                                   "model was trained with")
    if block.get("autoencoder_sha256") not in (None, sha):
        raise ckpt.CheckpointError(f"{where}: zoo autoencoder {block['autoencoder']!r} has other weights (SHA-256 "
                                   f"{str(sha)[:12]}...) than the one the model was trained with "
                                   f"({block['autoencoder_sha256'][:12]}...): it is not the autoencoder the model "
                                   "was trained with")
    block = {**block, "scale": scale, "autoencoder_sha256": sha}
    return (block, ae) if with_autoencoder else block


def wrap(den, meta: dict, where: str):
    """``den`` (a latent-space denoiser with ``meta``) as a LatentDenoiser, or ``den`` for a pixel model."""
    block, ae = resolve(meta, where, with_autoencoder=True)
    if block is None:
        return den
    from .denoiser import LatentDenoiser
    if list(ae.config.latent_shape) != [meta["model"].get("in_channels", 1), meta["model"]["image_size"],
                                        meta["model"]["image_size"]]:
        raise ckpt.CheckpointError(f"{where}: latent network shape does not match autoencoder "
                                   f"{block['autoencoder']!r} latents {list(ae.config.latent_shape)}")
    meta = {**meta, "latent": block}
    den.meta = meta
    return LatentDenoiser(den, ae, block["scale"], meta).eval()


def _install(meta: dict, where: str) -> dict:
    latent = resolve(meta, where) if meta.get("task") == "diffusion" else None
    return {"latent": latent} if latent is not None else {}


@register("latent", install=_install)
def build(tensors: dict, meta: dict, where: str):
    """A denoiser trained on autoencoder latents, as a ``LatentDenoiser`` that decodes its samples."""
    return wrap(plain(tensors, meta, where), meta, where)
