"""A latent video DiT: adaLN-Zero blocks (Peebles & Xie 2023) over space-time tokens with full 3-D
attention, per-frame conditioning and RoPE on time; three ways to run it.

    net(x [B, C, T, H, W], noise_labels [B], class_labels [B])     # full sequence, bidirectional
    net.block_diffusion(xt, x0, frame_labels [B, T], class_labels)  # Block Diffusion training form
    net.stream_step(x_block, noise_labels, class_labels, cache, start) / net.commit(...)  # KV cache

Every frame carries its own noise label (its adaLN modulation is computed per frame), so clean
context frames (noise label of σ = 0) and a noisy block can share one sequence — the vectorized
training of Block Diffusion (Arriola et al. 2025): ``[x_t | x_0]`` with the mask of
``block_causal.bd_mask``. The denoiser contract holds for ``x`` shaped [B, C, T, H, W].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.dit import FREQ_DIM, Mlp, init_dit_base, sincos_pos_embed_2d
from ..models.layers import ConditionEmbedding
from .attention import VideoAttention

Tensor = torch.Tensor


@dataclass
class VideoDiTConfig:
    in_channels: int = 4
    frame_size: int = 8          # latent frame height = width
    patch_size: int = 2
    hidden_size: int = 64
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 2.0
    num_classes: int = 10        # 0 = unconditional; label num_classes = null class
    frames: int = 16             # training clip length (the full-sequence mode's natural length)
    block_frames: int = 4        # frames per Block Diffusion block
    window_blocks: int = 3       # earlier blocks a block attends to (0: all of them)

    def __post_init__(self):
        if self.frame_size % self.patch_size:
            raise ValueError(f"frame_size {self.frame_size} is not divisible by patch_size {self.patch_size}")
        if self.hidden_size % 4 or self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by 4 and num_heads {self.num_heads}")
        if self.block_frames < 1 or self.window_blocks < 0 or self.frames < 1:
            raise ValueError("need frames >= 1, block_frames >= 1 and window_blocks >= 0")


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN's ``x * (1 + scale) + shift`` with per-frame shift/scale [B, F, 1, D] broadcast over each frame's
    tokens of x [B, F*P, D] (the same arithmetic as repeating them per token, without the copies)."""
    B, N, D = x.shape
    return (x.view(B, shift.shape[1], -1, D) * (1 + scale) + shift).view(B, N, D)


def gated(h: Tensor, gate: Tensor, y: Tensor) -> Tensor:
    """``h + gate * y`` with a per-frame gate [B, F, 1, D] over tokens [B, F*P, D]."""
    B, N, D = h.shape
    return (h.view(B, gate.shape[1], -1, D) + gate * y.view(B, gate.shape[1], -1, D)).view(B, N, D)


class VideoDiTBlock(nn.Module):
    """adaLN-Zero block with per-frame modulation: h [B, F*P, D], c [B, F, D]."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = VideoAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, h, c, frames, tokens, mask=None, layer=0, past=None, sink=None):
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c)[:, :, None].chunk(6, -1)
        h = gated(h, gate_a, self.attn(modulate(self.norm1(h), shift_a, scale_a), frames, tokens, mask, layer, past,
                                       sink))
        return gated(h, gate_m, self.mlp(modulate(self.norm2(h), shift_m, scale_m)))


class VideoDiT(nn.Module):
    """Latent video DiT; see the module docstring for its three entry points."""

    def __init__(self, config: VideoDiTConfig | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else VideoDiTConfig()
        D, p = cfg.hidden_size, cfg.patch_size
        self.grid = cfg.frame_size // p
        self.tokens_per_frame = self.grid ** 2
        self.x_embedder = nn.Conv2d(cfg.in_channels, D, kernel_size=p, stride=p)
        self.register_buffer("pos_embed", sincos_pos_embed_2d(D, self.grid)[None], persistent=False)  # [1, P, D]
        self.cond_embed = ConditionEmbedding(FREQ_DIM, D, cfg.num_classes)
        self.blocks = nn.ModuleList(VideoDiTBlock(D, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm_final = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        self.final_linear = nn.Linear(D, p * p * cfg.in_channels)
        self.initialize_weights()

    def initialize_weights(self):
        """DiT's init: xavier linears, adaLN modulations and the output layer zeroed (adaLN-Zero)."""
        init_dit_base(self)
        for lin in [b.adaLN_modulation[-1] for b in self.blocks] + [self.final_modulation[-1], self.final_linear]:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    # ---- tokens ---------------------------------------------------------------------------
    def check(self, x: Tensor) -> None:
        c = self.config
        if x.ndim != 5 or x.shape[1] != c.in_channels or tuple(x.shape[-2:]) != (c.frame_size, c.frame_size):
            raise ValueError(f"video DiT needs x [B, {c.in_channels}, T, {c.frame_size}, {c.frame_size}], "
                             f"got {tuple(x.shape)}")

    def tokens(self, x: Tensor) -> Tensor:
        """[B, C, F, H, W] -> [B, F*P, D] (frame-major) with the spatial positional embedding."""
        self.check(x)
        B, C, F, H, W = x.shape
        f = self.x_embedder(x.transpose(1, 2).reshape(B * F, C, H, W)).flatten(2).transpose(1, 2)  # [B*F, P, D]
        return (f + self.pos_embed).reshape(B, F * self.tokens_per_frame, -1)

    def untokens(self, h: Tensor, frames: int) -> Tensor:
        """[B, F*P, p*p*C] -> [B, C, F, H, W]."""
        B, G, p, C = h.shape[0], self.grid, self.config.patch_size, self.config.in_channels
        h = h.reshape(B, frames, G, G, p, p, C)
        return torch.einsum("bfhwpqc->bcfhpwq", h).reshape(B, C, frames, G * p, G * p)

    def frame_cond(self, frame_labels: Tensor, class_labels: Tensor | None) -> Tensor:
        """Per-frame conditioning c [B, F, D] from noise labels [B, F] and class labels [B] (None: null)."""
        B, F = frame_labels.shape
        if class_labels is not None:
            class_labels = class_labels.long().repeat_interleave(F)
        return self.cond_embed(frame_labels.reshape(-1).float(), class_labels).reshape(B, F, -1)

    def run(self, h: Tensor, c: Tensor, frames: Tensor, mask: Tensor | None = None, past=None, sink=None):
        """All blocks and the output layer -> [B, F*P, p*p*C]; ``sink`` collects each layer's (k, v)."""
        P = self.tokens_per_frame
        for i, block in enumerate(self.blocks):
            h = block(h, c, frames, P, mask, i, None if past is None else past[i], sink)
        shift, scale = self.final_modulation(c)[:, :, None].chunk(2, -1)
        return self.final_linear(modulate(self.norm_final(h), shift, scale))

    @staticmethod
    def labels_of(noise_labels, B: int, F: int, like: Tensor) -> Tensor:
        """[B] or scalar noise labels -> per frame [B, F]."""
        n = torch.as_tensor(noise_labels, dtype=like.dtype, device=like.device)
        return (n.reshape(-1, 1) if n.ndim else n.reshape(1, 1)).expand(B, F)

    # ---- the three modes --------------------------------------------------------------------
    def forward(self, x: Tensor, noise_labels, class_labels: Tensor | None = None) -> Tensor:
        """Full sequence, bidirectional: x [B, C, T, H, W], one noise label per clip -> [B, C, T, H, W]."""
        self.check(x)
        B, F = x.shape[0], x.shape[2]
        c = self.frame_cond(self.labels_of(noise_labels, B, F, x), class_labels)
        frames = torch.arange(F, device=x.device)
        return self.untokens(self.run(self.tokens(x), c, frames), F)

    def block_diffusion(self, xt: Tensor, x0: Tensor, frame_labels: Tensor, clean_label,
                        class_labels: Tensor | None = None) -> Tensor:
        """Block Diffusion's vectorized training form: noisy frames xt (noise labels [B, T], one per
        block) and the clean clip x0 in one sequence of 2T frames under ``bd_mask``; returns the
        output for the noisy frames [B, C, T, H, W]. ``clean_label``: the context's noise label, a float
        or per frame [B, T] (a context trained slightly noisy: ``VideoLoss.context_noise``)."""
        from .block_causal import bd_mask
        self.check(xt)
        B, F = xt.shape[0], xt.shape[2]
        cfg = self.config
        clean = torch.as_tensor(clean_label, dtype=xt.dtype, device=xt.device).expand(frame_labels.shape)
        labels = torch.cat([frame_labels.to(xt.dtype), clean], 1)
        c = self.frame_cond(labels, class_labels)
        frames = torch.arange(F, device=xt.device).repeat(2)
        h = torch.cat([self.tokens(xt), self.tokens(x0)], 1)
        mask = bd_mask(F, cfg.block_frames, cfg.window_blocks, xt.device)
        out = self.run(h, c, frames, mask)
        return self.untokens(out[:, :F * self.tokens_per_frame], F)

    def stream_step(self, x: Tensor, noise_labels, class_labels, cache, start: int) -> Tensor:
        """One noisy block x [B, C, Fb, H, W] (its first frame has index ``start``) attending to the
        cached clean frames before it -> output [B, C, Fb, H, W]. The cache is only read."""
        B, F = x.shape[0], x.shape[2]
        c = self.frame_cond(self.labels_of(noise_labels, B, F, x), class_labels)
        frames = torch.arange(start, start + F, device=x.device)
        return self.untokens(self.run(self.tokens(x), c, frames, past=cache.past(start, B)), F)

    @torch.no_grad()
    def commit(self, x0: Tensor, clean_label: float, class_labels, cache, start: int) -> None:
        """Run the finished (clean) block x0 once and store its keys/values in ``cache``."""
        B, F = x0.shape[0], x0.shape[2]
        c = self.frame_cond(self.labels_of(clean_label, B, F, x0), class_labels)
        frames = torch.arange(start, start + F, device=x0.device)
        kvs: list = []
        self.run(self.tokens(x0), c, frames, past=cache.past(start), sink=kvs)
        if len(kvs) != len(self.blocks):
            raise RuntimeError("commit: an attention layer did not run (a feature cache reused it); "
                               "streaming needs every layer's keys")
        cache.append(kvs, frames)
