"""Reference networks and a registry to rebuild them from a JSON config.

    net = build("unet", {"num_classes": 10})
    cfg = dataclasses.asdict(net.config)          # JSON-serialisable
    twin = build("unet", cfg)                     # same architecture
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from .autoencoder import Autoencoder, AutoencoderConfig
from .classifier import Classifier, ClassifierConfig
from .dit import DiT, DiTConfig
from .mlp import MLP, MLPConfig
from .unet import UNet, UNetConfig

ARCHS: dict[str, tuple[type[nn.Module], type]] = {
    "unet": (UNet, UNetConfig),
    "dit": (DiT, DiTConfig),
    "classifier": (Classifier, ClassifierConfig),
    "mlp": (MLP, MLPConfig),
    "autoencoder": (Autoencoder, AutoencoderConfig),
}


def build(arch: str, config: dict[str, Any] | None = None) -> nn.Module:
    """Instantiate `ARCHS[arch]` from a dict of config fields (missing fields take defaults)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHS)}")
    model_cls, config_cls = ARCHS[arch]
    if config is None:
        config = {}
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        if not isinstance(config, config_cls):
            raise TypeError(f"{arch!r} needs a {config_cls.__name__}, got {type(config).__name__}")
        return model_cls(config)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise TypeError(f"unknown {config_cls.__name__} key(s) {unknown}; valid: {sorted(fields)}")
    return model_cls(config_cls(**config))


__all__ = ["ARCHS", "build", "Autoencoder", "AutoencoderConfig", "UNet", "UNetConfig", "DiT", "DiTConfig", "Classifier", "ClassifierConfig", "MLP", "MLPConfig"]
