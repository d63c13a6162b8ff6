"""Video and streaming generation on moving digits (docs/video.md): data, a latent video DiT,
Block-Diffusion streaming with a KV cache, sparse attention, the video evaluator.

Video tensors are ``[B, C, T, H, W]``; the denoiser contract ``D(x, sigma, cond) -> x0`` holds as is.
"""
from ..models import ARCHS
from .adapters import AdaptedVideoConfig, AdaptedVideoDiT
from .model import VideoDiT, VideoDiTConfig
from . import parallel  # noqa: F401  (registers the frame split for D.parallel's patch/sequence/ring)

ARCHS.setdefault("video-dit", (VideoDiT, VideoDiTConfig))     # registering: zoo / build know the kind
ARCHS.setdefault("video-adapter", (AdaptedVideoDiT, AdaptedVideoConfig))

__all__ = ["VideoDiT", "VideoDiTConfig"]
