"""Latent diffusion (Rombach et al. 2022): a KL autoencoder (``models/autoencoder.py``) trained by
``AutoencoderTrainer`` (``effdiff train --preset mnist-ae``), diffusion models trained on its scaled
latents (``TrainConfig(data="mnist-latent")``, e.g. ``--preset mnist-ldm-dit``), and
``LatentDenoiser``, which makes such a model an ordinary denoiser in latent space that also decodes.

    den = ed.zoo.load("mnist-ldm-dit")                    # LatentDenoiser
    z = ed.sample(den, noise, sig, solver="dpmpp-2m", cond=labels)
    x = effdiff.latent.images(den, z)                     # decoded images (identity for pixel models)
"""
from .denoiser import LatentDenoiser, decode_macs, images, latent_of
from .encode import latent_stats, reconstruction_error

__all__ = ["LatentDenoiser", "images", "latent_of", "decode_macs", "latent_stats", "reconstruction_error"]
