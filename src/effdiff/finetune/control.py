"""A frozen UNet driven by a control module (ControlNet, ControlNet-XS, T2I-Adapter), and the
denoiser that samples it under one condition map.

    ctl = Controlled(den.net, make_control("controlnet-xs", den.net))
    D = controlled_denoiser(den, ctl, hint)       # D(x, sigma, labels) follows the map `hint`
    x = ed.sample(D, x_T, sigmas, "ddim", cond=labels)
"""
from __future__ import annotations

import torch
from torch import nn

from ..denoisers import Denoiser
from .controlnet import ControlNet, ControlNetConfig
from .controlnet_xs import ControlNetXS, ControlNetXSConfig
from .injection import injected
from .t2i_adapter import T2IAdapter, T2IAdapterConfig

CONTROLS: dict[str, tuple[type[nn.Module], type]] = {
    "controlnet": (ControlNet, ControlNetConfig),
    "controlnet-xs": (ControlNetXS, ControlNetXSConfig),
    "t2i-adapter": (T2IAdapter, T2IAdapterConfig),
}


def make_control(kind: str, unet: nn.Module, **fields) -> nn.Module:
    """A fresh control module of ``kind`` (a ``CONTROLS`` key) sized for ``unet``."""
    if kind not in CONTROLS:
        raise KeyError(f"unknown control module {kind!r}; known: {', '.join(CONTROLS)}")
    if not all(hasattr(unet, a) for a in ("input_blocks", "middle_block", "output_blocks", "cond_embed")):
        raise TypeError(f"{kind} needs an effdiff UNet (input/middle/output blocks), got {type(unet).__name__}")
    cls, config = CONTROLS[kind]
    return cls(unet, config(**fields))


class Controlled(nn.Module):
    """``net(x, noise_labels, class_labels, hint)``: the base UNet, with the control's features
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
    """``den``'s process and parameterization around the controlled network bound to ``hint``."""
    if not isinstance(den, Denoiser):
        raise TypeError(f"control needs an effdiff Denoiser (VP/flow wrapper), got {type(den).__name__}")
    out = Denoiser(Hinted(controlled, hint), den.process, den.prediction, den.cond_classes)
    out.meta = getattr(den, "meta", {})
    return out.eval()
