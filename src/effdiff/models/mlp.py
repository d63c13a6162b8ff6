"""A small MLP denoiser network for 2-D toy densities: ``net(x [B, d], noise_labels, class_labels)``."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import NoiseEmbedding


@dataclass
class MLPConfig:
    dim: int = 2
    hidden: int = 128
    depth: int = 3
    emb_dim: int = 64
    num_classes: int = 0


class MLP(nn.Module):
    """Residual MLP with a sinusoidal noise embedding added to every hidden layer."""

    def __init__(self, config: MLPConfig | None = None):
        super().__init__()
        self.config = c = config or MLPConfig()
        self.embed = NoiseEmbedding(c.emb_dim, c.hidden)
        self.inp = nn.Linear(c.dim, c.hidden)
        self.layers = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(c.hidden, c.hidden)) for _ in range(c.depth))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(c.hidden, c.dim))

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels=None) -> torch.Tensor:
        emb = self.embed(noise_labels)        # [B, hidden]
        h = self.inp(x) + emb
        for layer in self.layers:
            h = h + layer(h)
        return self.out(h)
