"""Small CNN digit classifier whose penultimate features feed the quality metrics
(a Fréchet distance in its feature space, as FID uses Inception; Heusel et al. 2017).
The zoo's evaluation networks (`digits-eval`, `mnist-eval`) are this network trained on data
the diffusion models never saw (see `effdiff.training.evalnet`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import group_norm


@dataclass
class ClassifierConfig:
    in_channels: int = 1
    image_size: int = 8
    num_classes: int = 10
    width: int = 32
    feature_dim: int = 64
    dropout: float = 0.1
    stem_stride: int = 1  # 2 halves the resolution at the first conv (28x28 MNIST at a quarter of the cost)

    def __post_init__(self):
        if self.num_classes < 1:
            raise ValueError(f"Classifier needs num_classes >= 1, got {self.num_classes}")
        if self.image_size < 2:
            raise ValueError(f"image_size must be >= 2, got {self.image_size}")
        if self.stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {self.stem_stride}")


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), group_norm(cout), nn.SiLU())


class Classifier(nn.Module):
    """x [B, C, H, W] in [-1, 1] -> logits [B, num_classes]; `features(x)` -> [B, feature_dim]."""

    def __init__(self, config: ClassifierConfig | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else ClassifierConfig()
        w = cfg.width
        self.body = nn.Sequential(
            _conv(cfg.in_channels, w, stride=cfg.stem_stride),
            _conv(w, w),
            _conv(w, 2 * w, stride=2),  # H/2
            _conv(2 * w, 2 * w),
            nn.AdaptiveAvgPool2d(2),  # [B, 2w, 2, 2]: keeps coarse layout, any input size
            nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(8 * w, cfg.feature_dim), nn.SiLU())
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features [B, feature_dim]: after the last hidden SiLU, before dropout and head."""
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"x must be [B, {cfg.in_channels}, H, W], got {tuple(x.shape)}")
        return self.fc(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))  # [B, num_classes]
