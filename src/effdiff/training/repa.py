"""REPA, representation alignment (Yu et al. 2024, "Representation Alignment for Generation:
Training Diffusion Transformers Is Easier Than You Think"): the hidden state of one block of
the denoiser network, through a trainable MLP head, is pulled towards the features of a frozen
encoder of the *clean* image by a negative cosine similarity, added to the loss with ``weight``
(the paper's λ = 0.5).

    repa={"encoder": "digits-classifier", "weight": 0.5, "layer": 2}

- ``encoder``: a zoo model trained by effdiff on the training data only. The paper aligns to
  DINOv2, which cannot be downloaded here; ``digits-classifier`` (its features before the head)
  is the one shipped. An autoencoder with ``encode`` (e.g. ``mnist-ae``) works by name too.
  The evaluation networks (``digits-eval``, ``mnist-eval``) are refused: aligning to the network
  that scores the samples would game the metric.
- ``layer``: 1-based index of the block whose output is aligned, in call order (DiT: its
  ``blocks``; UNet: input blocks, the middle block, output blocks). The paper uses block 8 of 28.
- The hidden state is mean-pooled over tokens / pixels before the head, because the shipped
  encoders give one global feature vector per image (the paper aligns patch by patch).
- ``head_hidden``: width of the 3-layer SiLU MLP head (the paper's is 2048 wide for SiT-XL).

The head's parameters are trained with the network, saved in training checkpoints (``repa.*``)
and dropped at export: the exported model is the plain denoiser.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..hooks.registry import ModelHook, add_hook

EVAL_NETWORKS = ("digits-eval", "mnist-eval")
DEFAULTS = {"encoder": "digits-classifier", "weight": 0.5, "layer": 2, "head_hidden": 256}


def validate(repa: dict) -> None:
    """Raise a ``ValueError`` naming the bad REPA option (an empty dict means REPA is off)."""
    if not isinstance(repa, dict):
        raise ValueError(f"repa must be a dict like {DEFAULTS}, got {repa!r}")
    if not repa:
        return
    unknown = set(repa) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown repa option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    enc = repa.get("encoder", DEFAULTS["encoder"])
    if not isinstance(enc, str) or not enc:
        raise ValueError(f"repa encoder must be a zoo model name, got {enc!r}")
    if enc in EVAL_NETWORKS:
        raise ValueError(f"repa encoder {enc!r} is an evaluation network; aligning to it would game the "
                         "metrics. Use an encoder trained on the training data (e.g. 'digits-classifier')")
    w = repa.get("weight", DEFAULTS["weight"])
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and w > 0):
        raise ValueError(f"repa weight must be a positive finite number, got {w!r}")
    for k in ("layer", "head_hidden"):
        v = repa.get(k, DEFAULTS[k])
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"repa {k} must be a positive integer, got {v!r}")


class Encoder(nn.Module):
    """A frozen zoo model as ``x [B, C, H, W] -> features [B, F]``."""

    def __init__(self, name: str):
        super().__init__()
        if name in EVAL_NETWORKS:
            raise ValueError(f"repa encoder {name!r} is an evaluation network")
        from .. import zoo
        if name not in zoo.names():
            raise ValueError(f"unknown repa encoder {name!r}: not a zoo model; known: {', '.join(zoo.names())}")
        model = zoo.load(name)
        self.name = name
        self.model = model.eval().requires_grad_(False)
        if not (hasattr(model, "features") or hasattr(model, "encode")):
            raise ValueError(f"zoo model {name!r} has no features() or encode(): it cannot be a repa encoder")
        self.image_size = getattr(getattr(model, "config", None), "image_size", None)

    def train(self, mode: bool = True):
        return super().train(False)      # frozen: dropout / norms stay in eval mode

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.model.features(x) if hasattr(self.model, "features") else self.model.encode(x)
        if isinstance(f, (tuple, list)):
            f = f[0]                                 # (mean, logvar) of a KL encoder: the mean
        return f.reshape(f.shape[0], -1).float()


def blocks(net: nn.Module) -> list[nn.Module]:
    """The network's blocks in call order (DiT blocks, or UNet input/middle/output blocks)."""
    from .. import sites
    if sites.find_unet(net) is not None:
        return [m for _, m in sites.unet(net).all()]
    if sites.find_dit_blocks(net) is not None:
        return list(sites.dit_blocks(net))
    raise ValueError(f"repa needs a UNet or DiT network with blocks, got {type(net).__name__}")


class Capture(ModelHook):
    """Keeps the block's output (the hidden state REPA aligns)."""

    name = "repa-capture"

    def __init__(self):
        self.h = None

    def __call__(self, module, call_next, *args, **kwargs):
        out = call_next(*args, **kwargs)
        self.h = out
        return out


def pool(h: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] (UNet) or [B, N, D] (DiT) -> [B, C] / [B, D]."""
    if h.ndim == 4:
        return h.mean((2, 3))
    if h.ndim == 3:
        return h.mean(1)
    raise ValueError(f"repa cannot pool a hidden state shaped {tuple(h.shape)}")


class REPA(nn.Module):
    """The alignment term for ``net``: ``loss(x0) -> [B]`` after a forward of ``net``."""

    def __init__(self, repa: dict, net: nn.Module, example_input: tuple):
        super().__init__()
        validate(repa)
        o = {**DEFAULTS, **repa}
        self.weight = float(o["weight"])
        bl = blocks(net)
        if not 1 <= o["layer"] <= len(bl):
            raise ValueError(f"repa layer must be in [1, {len(bl)}] for this {type(net).__name__}, got {o['layer']}")
        self.encoder = Encoder(o["encoder"])
        x = example_input[0]
        if self.encoder.image_size is not None and self.encoder.image_size != x.shape[-1]:
            raise ValueError(f"repa encoder {o['encoder']!r} takes {self.encoder.image_size}x"
                             f"{self.encoder.image_size} images, the data is {x.shape[-2]}x{x.shape[-1]}")
        self.capture = Capture()
        add_hook(bl[o["layer"] - 1], self.capture)
        was = net.training
        net.eval()
        with torch.no_grad():                      # the widths, from one dry run (no random draw)
            net(*example_input)
            hdim = pool(self.capture.h).shape[1]
            fdim = self.encoder(x).shape[1]
        net.train(was)
        self.capture.h = None
        k = int(o["head_hidden"])
        self.head = nn.Sequential(nn.Linear(hdim, k), nn.SiLU(), nn.Linear(k, k), nn.SiLU(), nn.Linear(k, fdim))

    def loss(self, x0: torch.Tensor) -> torch.Tensor:
        """-cos(head(h), encoder(x0)) per sample [B], for the hidden state of the last forward."""
        h = self.capture.h
        if h is None:
            raise RuntimeError("repa: no hidden state captured; run the network first")
        self.capture.h = None
        z = self.head(pool(h).float())
        return -F.cosine_similarity(z, self.encoder(x0.float()), dim=1)
