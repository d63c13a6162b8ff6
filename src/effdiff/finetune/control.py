"""A frozen UNet or DiT driven by a control module (UNet: ControlNet, ControlNet-XS, T2I-Adapter;
DiT: ControlNet in PixArt-δ's form), and the denoiser that samples it under one condition map.
``make_control(kind, net)`` picks the module built for ``net``'s backbone.

    ctl = Controlled(den.net, make_control("controlnet-xs", den.net))
    D = controlled_denoiser(den, ctl, hint)       # D(x, sigma, labels) follows the map `hint`
    x = ed.sample(D, x_T, sigmas, "ddim", cond=labels)

On a latent model (``mnist-ldm-dit``) the hint lives on the latent grid: ``controlled_denoiser``
area-resizes an image-size map to it and returns a ``LatentDenoiser`` (``.decode`` works as before).
"""
from __future__ import annotations

import torch
from torch import nn

from ..denoisers import Denoiser
from .conditions import resize
from .controlnet import ControlNet, ControlNetConfig
from .controlnet_dit import ControlNetDiT, ControlNetDiTConfig
from .controlnet_xs import ControlNetXS, ControlNetXSConfig
from .injection import injected
from .t2i_adapter import T2IAdapter, T2IAdapterConfig

CONTROLS: dict[str, tuple[type[nn.Module], type]] = {          # on an effdiff UNet
    "controlnet": (ControlNet, ControlNetConfig),
    "controlnet-xs": (ControlNetXS, ControlNetXSConfig),
    "t2i-adapter": (T2IAdapter, T2IAdapterConfig),
}
DIT_CONTROLS: dict[str, tuple[type[nn.Module], type]] = {      # on an effdiff DiT
    "controlnet": (ControlNetDiT, ControlNetDiTConfig),
}
_BY_BACKBONE = {"unet": CONTROLS, "dit": DIT_CONTROLS}


def backbone(net: nn.Module) -> str | None:
    """``"unet"`` / ``"dit"`` for effdiff's reference networks (by their block structure), else None."""
    if all(hasattr(net, a) for a in ("input_blocks", "middle_block", "output_blocks", "cond_embed")):
        return "unet"
    if all(hasattr(net, a) for a in ("blocks", "patchify", "final_layer", "cond_embed")):
        return "dit"
    return None


def make_control(kind: str, net: nn.Module, **fields) -> nn.Module:
    """A fresh control module of ``kind`` sized for ``net`` (a ``CONTROLS`` key for a UNet, a
    ``DIT_CONTROLS`` key for a DiT)."""
    if kind not in CONTROLS and kind not in DIT_CONTROLS:
        raise KeyError(f"unknown control module {kind!r}; known: {', '.join(CONTROLS)}")
    arch = backbone(net)
    if arch is None or kind not in _BY_BACKBONE[arch]:
        hint = f"; on a DiT: {', '.join(DIT_CONTROLS)}" if arch == "dit" else ""
        raise TypeError(f"{kind} needs an effdiff UNet (input/middle/output blocks){hint}, got {type(net).__name__}")
    cls, config = _BY_BACKBONE[arch][kind]
    return cls(net, config(**fields))


def control_kind(control: nn.Module) -> str:
    """The registry name of a control module (what its file records)."""
    for table in _BY_BACKBONE.values():
        for k, (cls, _) in table.items():
            if isinstance(control, cls):
                return k
    raise TypeError(f"{type(control).__name__} is not a registered control module")


class Controlled(nn.Module):
    """``net(x, noise_labels, class_labels, hint)``: the base UNet / DiT, with the control's features
    injected for this call (``hint=None``: the base model alone)."""

    def __init__(self, base: nn.Module, control: nn.Module):
        super().__init__()
        self.base, self.control = base, control
        self.config = base.config

    def forward(self, x, noise_labels, class_labels=None, hint=None):
        if hint is None:
            return self.base(x, noise_labels, class_labels)
        if hint.shape[0] != x.shape[0]:
            if x.shape[0] % hint.shape[0]:
                raise ValueError(f"hint batch {hint.shape[0]} does not divide the input batch {x.shape[0]}")
            hint = hint.repeat(x.shape[0] // hint.shape[0], *([1] * (hint.ndim - 1)))   # e.g. CFG's [x; x]
        if hint.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"hint {tuple(hint.shape)} and x {tuple(x.shape)} differ in size")
        with injected(self.control.hooks(self.base, x, noise_labels, class_labels, hint.to(x))):
            return self.base(x, noise_labels, class_labels)


class Hinted(nn.Module):
    """A ``Controlled`` network bound to one condition map: ``net(x, noise_labels, class_labels)``."""

    def __init__(self, controlled: Controlled, hint: torch.Tensor):
        super().__init__()
        self.controlled, self.hint = controlled, hint
        self.config = controlled.config

    def forward(self, x, noise_labels, class_labels=None):
        return self.controlled(x, noise_labels, class_labels, self.hint)


def controlled_denoiser(den: Denoiser, controlled: Controlled, hint: torch.Tensor) -> Denoiser:
    """``den``'s process and parameterization around the controlled network bound to ``hint``. For a
    latent model (``LatentDenoiser``) the result is one too, and a hint at image size is area-resized to
    the latent grid (as in training)."""
    from ..latent import LatentDenoiser
    if isinstance(den, LatentDenoiser):
        inner = controlled_denoiser(den.denoiser, controlled, resize(hint, den.latent_shape[-2:]))
        return LatentDenoiser(inner, den.autoencoder, den.scale, getattr(den, "meta", None)).eval()
    if not isinstance(den, Denoiser):
        raise TypeError(f"control needs an effdiff Denoiser (VP/flow wrapper), got {type(den).__name__}")
    out = Denoiser(Hinted(controlled, hint), den.process, den.prediction, den.cond_classes)
    out.meta = getattr(den, "meta", {})
    return out.eval()
