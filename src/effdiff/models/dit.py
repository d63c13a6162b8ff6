"""Diffusion Transformer with adaLN-Zero (Peebles & Xie 2023), optional cross-attention.

Each `DiTBlock` calls its `attn` and `mlp` submodules on the modulated input and gates
their outputs afterwards, so feature caching (FORA, Selvaraju et al. 2024; Δ-DiT) can hook
those submodules and reuse their outputs before the gate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import ConditionEmbedding, CrossAttention, SelfAttention, check_inputs

FREQ_DIM = 256  # sinusoidal features of the noise label, as in DiT's TimestepEmbedder


@dataclass
class DiTConfig:
    patch_size: int = 2
    hidden_size: int = 96
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int = 10  # 0 = unconditional; label `num_classes` is the null class
    in_channels: int = 1
    image_size: int = 8
    learn_sigma: bool = False  # output 2*in_channels channels (eps and variance, IDDPM)
    cross_attention: bool = False
    context_dim: int | None = None
    # condition through cross-attention only: the model embeds each class label (null label
    # included) as a learned sequence of `context_len` context tokens; adaLN then sees only
    # the noise level. Keeps the denoiser contract `cond = labels`.
    context_from_labels: bool = False
    context_len: int = 4

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        if self.hidden_size % self.num_heads or self.hidden_size % 4:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by 4 and num_heads {self.num_heads}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")
        if self.cross_attention and not self.context_dim:
            raise ValueError("cross_attention=True needs context_dim")
        if self.context_from_labels and not (self.cross_attention and self.num_classes > 0 and self.context_len > 0):
            raise ValueError("context_from_labels=True needs cross_attention=True, num_classes > 0 and context_len > 0")


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # x: [B, N, D], shift/scale: [B, D]
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def sincos_pos_embed_2d(dim: int, grid_size: int) -> torch.Tensor:
    """Fixed 2-D sin-cos positional embedding [grid_size**2, dim] (MAE/DiT): first half from
    the column index, second half from the row index, each [sin | cos]."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))  # [D/4]
    pos = torch.arange(grid_size, dtype=torch.float64)
    row, col = torch.meshgrid(pos, pos, indexing="ij")  # [G, G] each, row-major tokens

    def embed_1d(p: torch.Tensor) -> torch.Tensor:
        out = p.reshape(-1, 1) * omega[None]  # [G*G, D/4]
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)  # [G*G, D/2]

    return torch.cat([embed_1d(col), embed_1d(row)], dim=1).float()  # [G*G, D]


class Mlp(nn.Module):
    """Two-layer GELU(tanh) MLP: [B, N, D] -> [B, N, D]."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block; `cross_attn` (optional) sits between `attn` and `mlp`."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, context_dim: int | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads)
        if context_dim is not None:
            self.norm_cross = nn.LayerNorm(dim, eps=1e-6)
            self.cross_attn = CrossAttention(dim, context_dim, num_heads)
        else:
            self.norm_cross = self.cross_attn = None
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        # x: [B, N, D], c: [B, D], context: [B, L, context_dim] -> [B, N, D]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.norm_cross(x), context)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """adaLN (shift, scale) then a linear map to patch pixels: [B, N, D] -> [B, N, p*p*C]."""

    def __init__(self, dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))



def init_dit_base(model: nn.Module) -> None:
    """DiT's init before adaLN-Zero (Peebles & Xie 2023): xavier linears with zero bias, the patch embedding as
    a linear, N(0, 0.02) label table and noise-MLP weights. ``model`` has ``x_embedder`` and ``cond_embed``."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    w = model.x_embedder.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.zeros_(model.x_embedder.bias)
    if model.cond_embed.label is not None:
        nn.init.normal_(model.cond_embed.label.table.weight, std=0.02)
    for lin in (model.cond_embed.noise.mlp[0], model.cond_embed.noise.mlp[2]):
        nn.init.normal_(lin.weight, std=0.02)

class DiT(nn.Module):
    """net(x [B,C,H,W], noise_labels [B], class_labels [B] | None, context [B,L,Dc] | None) -> [B,C',H,W].
    With ``context_from_labels`` the class labels become the cross-attention context."""

    def __init__(self, config: DiTConfig | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else DiTConfig()
        D, p = cfg.hidden_size, cfg.patch_size
        self.out_channels = cfg.in_channels * (2 if cfg.learn_sigma else 1)
        self.grid_size = cfg.image_size // p

        self.x_embedder = nn.Conv2d(cfg.in_channels, D, kernel_size=p, stride=p)  # patchify
        self.register_buffer("pos_embed", sincos_pos_embed_2d(D, self.grid_size)[None], persistent=False)  # [1, N, D]
        self.cond_embed = ConditionEmbedding(FREQ_DIM, D, 0 if cfg.context_from_labels else cfg.num_classes)
        context_dim = cfg.context_dim if cfg.cross_attention else None
        if cfg.context_from_labels:  # label -> [context_len, context_dim]; row num_classes = null
            self.context_table = nn.Embedding(cfg.num_classes + 1, cfg.context_len * context_dim)
        elif context_dim is not None:
            self.null_context = nn.Parameter(torch.zeros(1, 1, context_dim))  # learned "no context"
        self.blocks = nn.ModuleList(DiTBlock(D, cfg.num_heads, cfg.mlp_ratio, context_dim) for _ in range(cfg.depth))
        self.final_layer = FinalLayer(D, p, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self):
        """DiT init: xavier linears, N(0, 0.02) embeddings, adaLN and output zeroed (adaLN-Zero)."""
        init_dit_base(self)
        if hasattr(self, "null_context"):
            nn.init.normal_(self.null_context, std=0.02)
        if hasattr(self, "context_table"):  # unit-scale tokens, like a text encoder's features
            nn.init.normal_(self.context_table.weight, std=1.0)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
            if block.cross_attn is not None:  # keep a fresh block the identity
                nn.init.zeros_(block.cross_attn.proj.weight)
                nn.init.zeros_(block.cross_attn.proj.bias)
        for lin in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        # [B, C, H, W] -> [B, N, D], N = (H/p) * (W/p), with positional embedding
        return self.x_embedder(x).flatten(2).transpose(1, 2) + self.pos_embed

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        # [B, N, p*p*C'] -> [B, C', H, W]
        B, G, p, C = x.shape[0], self.grid_size, self.config.patch_size, self.out_channels
        x = x.reshape(B, G, G, p, p, C)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(B, C, G * p, G * p)

    def embed(self, noise_labels: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Conditioning c = t_emb + y_emb: [B, hidden_size]."""
        return self.cond_embed(noise_labels, class_labels)

    def forward(
        self,
        x: torch.Tensor,
        noise_labels: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        cfg = self.config
        noise_labels, class_labels = check_inputs(x, noise_labels, class_labels, cfg.in_channels, cfg.num_classes)
        if x.shape[-2:] != (cfg.image_size, cfg.image_size):
            raise ValueError(f"DiT was built for {cfg.image_size}x{cfg.image_size} images, got {tuple(x.shape)}")
        B = x.shape[0]
        if cfg.cross_attention:
            if context is None and cfg.context_from_labels:
                labels = class_labels if class_labels is not None else x.new_full((B,), cfg.num_classes, dtype=torch.long)
                context = self.context_table(labels).view(B, cfg.context_len, cfg.context_dim)
            elif context is None:
                context = self.null_context.expand(B, -1, -1)
            elif context.ndim != 3 or context.shape[0] != B or context.shape[2] != cfg.context_dim:
                raise ValueError(f"context must be [B={B}, L, {cfg.context_dim}], got {tuple(context.shape)}")
            context = context.to(x.dtype)
        elif context is not None:
            raise ValueError("context given but this DiT was built with cross_attention=False")
        h = self.patchify(x)  # [B, N, D]
        c = self.embed(noise_labels, class_labels)  # [B, D]
        for block in self.blocks:
            h = block(h, c, context)
        return self.unpatchify(self.final_layer(h, c))  # [B, C', H, W]
