"""Pieces shared by the reference networks: noise/class conditioning and attention.

Written once here and used by `unet.py` and `dit.py`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_positions: int = 10000) -> torch.Tensor:
    """Sinusoidal embedding of a (continuous) noise label, ADM/EDM style [cos | sin].

    t: [B] float -> [B, dim]. Works for DDPM steps 0..999 as well as 1000*t or EDM's
    log(sigma)/4 (Ho et al. 2020; Dhariwal & Nichol 2021; Karras et al. 2022).
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_positions) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )  # [half]
    args = t.float()[:, None] * freqs[None]  # [B, half]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # [B, 2*half]
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class NoiseEmbedding(nn.Module):
    """Sinusoidal features of the noise label followed by a two-layer MLP."""

    def __init__(self, freq_dim: int, emb_dim: int, max_positions: int = 10000):
        super().__init__()
        self.freq_dim = freq_dim
        self.max_positions = max_positions
        self.mlp = nn.Sequential(nn.Linear(freq_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, noise_labels: torch.Tensor) -> torch.Tensor:
        # noise_labels: [B] -> [B, emb_dim]
        freqs = timestep_embedding(noise_labels, self.freq_dim, self.max_positions)
        return self.mlp(freqs.to(self.mlp[0].weight.dtype))


class ClassEmbedding(nn.Module):
    """Class table with one extra row, index `num_classes`, for the null class (CFG,
    Ho & Salimans 2022; DiT's LabelEmbedder)."""

    def __init__(self, num_classes: int, emb_dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, emb_dim)

    def forward(self, class_labels: torch.Tensor) -> torch.Tensor:
        # class_labels: [B] long in [0, num_classes] -> [B, emb_dim]
        return self.table(class_labels)


class ConditionEmbedding(nn.Module):
    """emb = MLP(sinusoid(noise_labels)) + class_table[class_labels]; labels None = null class.

    With num_classes == 0 the model is unconditional and class labels are ignored.
    """

    def __init__(self, freq_dim: int, emb_dim: int, num_classes: int, max_positions: int = 10000):
        super().__init__()
        self.num_classes = num_classes
        self.noise = NoiseEmbedding(freq_dim, emb_dim, max_positions)
        self.label = ClassEmbedding(num_classes, emb_dim) if num_classes > 0 else None

    def forward(self, noise_labels: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        # noise_labels: [B] float, class_labels: [B] long or None -> [B, emb_dim]
        emb = self.noise(noise_labels)
        if self.label is not None:
            if class_labels is None:  # all-null
                class_labels = torch.full(
                    (emb.shape[0],), self.num_classes, dtype=torch.long, device=emb.device
                )
            emb = emb + self.label(class_labels)
        return emb


def check_inputs(
    x: torch.Tensor,
    noise_labels: torch.Tensor | float,
    class_labels: torch.Tensor | None,
    in_channels: int,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate the network contract and return (noise_labels [B] float, class_labels [B] long | None).

    A scalar (or [1]) noise label is broadcast over the batch. With num_classes == 0 the
    class labels are ignored and None is returned.
    """
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"x must be [B, {in_channels}, H, W], got {tuple(x.shape)}")
    B = x.shape[0]
    noise_labels = torch.as_tensor(noise_labels, device=x.device)
    if noise_labels.ndim == 0 or noise_labels.shape == (1,):
        noise_labels = noise_labels.reshape(1).expand(B)
    if noise_labels.shape != (B,):
        raise ValueError(f"noise_labels must be [B]={B} (or a scalar), got {tuple(noise_labels.shape)}")
    noise_labels = noise_labels.float()
    if num_classes == 0 or class_labels is None:
        return noise_labels, None
    if not isinstance(class_labels, torch.Tensor):
        class_labels = torch.as_tensor(class_labels, device=x.device)
    if class_labels.dtype.is_floating_point or class_labels.dtype == torch.bool:
        raise TypeError(f"class_labels must be an integer tensor, got {class_labels.dtype}")
    if class_labels.shape != (B,):
        raise ValueError(f"class_labels must be [B]={B}, got {tuple(class_labels.shape)}")
    # Value check only on CPU in eager mode: on an accelerator it would force a sync every call, and under
    # torch.compile reading the values breaks the graph at every forward (there nn.Embedding's own bounds
    # check catches out-of-range labels).
    if class_labels.device.type == "cpu" and B > 0 and not torch.compiler.is_compiling():
        lo, hi = int(class_labels.min()), int(class_labels.max())
        if lo < 0 or hi > num_classes:
            raise ValueError(
                f"class_labels must lie in [0, {num_classes}] ({num_classes} = null class), "
                f"got values in [{lo}, {hi}]"
            )
    return noise_labels, class_labels.long().to(x.device)


class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens (Vaswani et al. 2017): [B, N, D] -> [B, N, D]."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, N, D/heads]
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, N, D/heads]
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


class CrossAttention(nn.Module):
    """Multi-head attention from tokens x [B, N, D] to a context [B, L, context_dim] -> [B, N, D]."""

    def __init__(self, dim: int, context_dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(context_dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        L, H = context.shape[1], self.num_heads
        q = self.q(x).reshape(B, N, H, D // H).transpose(1, 2)  # [B, H, N, D/H]
        k, v = self.kv(context).reshape(B, L, 2, H, D // H).permute(2, 0, 3, 1, 4)  # [B, H, L, D/H]
        out = F.scaled_dot_product_attention(q, k, v)  # [B, H, N, D/H]
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


def group_norm(channels: int, max_groups: int = 32, min_channels_per_group: int = 4) -> nn.GroupNorm:
    """GroupNorm with the most groups (<= 32) that divide `channels` with >= 4 channels each (EDM)."""
    groups = max(1, min(max_groups, channels // min_channels_per_group))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=1e-6)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a module's parameters in place and return it (ADM's zero init)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module
