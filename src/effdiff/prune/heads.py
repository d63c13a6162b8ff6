"""Attention-head pruning (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"; the
heads of Diff-Pruning's structural pruning): each head's Taylor importance, accumulated over the
early timesteps as Diff-Pruning does (importance.py), and the least important heads removed by
shrinking ``qkv``'s rows and ``proj``'s columns.

effdiff's ``SelfAttention`` (DiT blocks, UNet attention blocks) derives its head width from its
input width, so a pruned layer is a ``PrunedAttention``: the same parameters (``qkv``, ``proj``:
state-dict keys unchanged) with ``num_heads`` kept at the original ``head_dim``. Unpruned
models are untouched.

    t = techniques.get("head-pruning")
    cfg = t.prepare(den, HeadPruningConfig(ratio=0.5), run)   # fills keep: layer -> kept heads
    with t.apply(den, cfg) as h: ...                          # remove() restores the exact model
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..hooks import Handle
from ..models.layers import SelfAttention
from ..sites import network, replace
from ..techniques import Run, Technique, register
from .channels import slice_linear
from .depth import DepthStats, dropped, net_macs
from .diff_pruning import DiffPruningConfig, training_batch
from .importance import taylor, taylor_gradients


class PrunedAttention(SelfAttention):
    """Self-attention with ``num_heads`` heads of width ``head_dim`` on a ``dim``-wide stream:
    [B, N, dim] -> [B, N, dim]."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, qkv_bias: bool = True):
        nn.Module.__init__(self)
        self.num_heads, self.head_dim = num_heads, head_dim
        self.qkv = nn.Linear(dim, 3 * num_heads * head_dim, bias=qkv_bias)
        self.proj = nn.Linear(num_heads * head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        H, d = self.num_heads, self.head_dim
        q, k, v = self.qkv(x).reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4)  # each [B, H, N, d]
        out = F.scaled_dot_product_attention(q, k, v)                          # [B, H, N, d]
        return self.proj(out.transpose(1, 2).reshape(B, N, H * d))


def head_dim(m: SelfAttention) -> int:
    return m.qkv.out_features // 3 // m.num_heads


def layers(net: nn.Module) -> dict[str, SelfAttention]:
    """The self-attention layers of ``net`` (DiT ``blocks.i.attn``, UNet ``...attn``) by name."""
    return {n: m for n, m in net.named_modules() if isinstance(m, SelfAttention)}


def heads(net: nn.Module) -> dict[str, int]:
    """Pruned layer name -> heads kept (what a pruned checkpoint records)."""
    return {n: m.num_heads for n, m in layers(net).items() if isinstance(m, PrunedAttention)}


def importance(m: SelfAttention) -> torch.Tensor:
    """Taylor importance per head [num_heads]: its q, k, v rows and its ``proj`` columns."""
    H, d = m.num_heads, head_dim(m)
    imp = taylor(m.qkv.weight).reshape(3, H, d, -1).sum((0, 2, 3)) + taylor(m.proj.weight).reshape(-1, H, d).sum((0, 2))
    if m.qkv.bias is not None:
        imp = imp + taylor(m.qkv.bias).reshape(3, H, d).sum((0, 2))
    return imp


def shrunk(m: SelfAttention, keep: torch.Tensor) -> PrunedAttention:
    """A ``PrunedAttention`` holding heads ``keep`` (sorted indices) of ``m``'s weights."""
    H, d = m.num_heads, head_dim(m)
    cols = (keep[:, None] * d + torch.arange(d)).reshape(-1)                 # the heads' channels
    rows = (torch.arange(3)[:, None] * H * d + cols[None]).reshape(-1)        # in q, k and v
    new = PrunedAttention(m.proj.out_features, len(keep), d, qkv_bias=m.qkv.bias is not None)
    new.qkv, new.proj = slice_linear(m.qkv, rows=rows), slice_linear(m.proj, cols=cols)
    return new


@dataclass
class HeadPruningConfig(DiffPruningConfig):
    """Diff-Pruning's fields (``thr`` / ``stride`` / ``num_samples``: the importance accumulation)
    with ``ratio`` the share of each attention layer's heads removed (``scope="local"``), or of all
    heads ranked by importance normalised per layer (``"global"``); ``min_heads`` kept per layer;
    ``keep``: layer -> kept head indices, filled by ``prepare``."""
    scope: str = "local"
    min_heads: int = 1

    def __post_init__(self):
        super().__post_init__()
        if self.scope not in ("local", "global"):
            raise ValueError(f"scope must be 'local' or 'global', got {self.scope!r}")
        if self.min_heads < 1:
            raise ValueError(f"min_heads must be >= 1, got {self.min_heads}")


@dataclass
class HeadStats(DepthStats):
    """``blocks``: attention layers pruned; heads, params and MACs before / after."""
    heads_before: int = 0
    heads_after: int = 0


def choose(scores: dict[str, torch.Tensor], ratio: float, scope: str = "local", min_heads: int = 1) -> dict:
    """Layer -> kept head indices (sorted): the most important heads, at least ``min_heads`` each."""
    if scope == "local":
        out = {}
        for n, s in scores.items():
            k = max(min_heads, round(len(s) * (1 - ratio)))
            out[n] = s.topk(min(k, len(s))).indices.sort().values
        return out
    norm = {n: s / s.sum().clamp_min(1e-30) for n, s in scores.items()}
    total = sum(len(s) for s in scores.values())
    budget = max(round(total * (1 - ratio)), min_heads * len(scores))
    keep = {n: set(s.topk(min(min_heads, len(s))).indices.tolist()) for n, s in norm.items()}
    rest = sorted(((float(v), n, i) for n, s in norm.items() for i, v in enumerate(s) if i not in keep[n]), reverse=True)
    for _, n, i in rest[:budget - sum(len(k) for k in keep.values())]:
        keep[n].add(i)
    return {n: torch.tensor(sorted(k)) for n, k in keep.items()}


def prepare_head_pruning(denoiser, config: HeadPruningConfig, run: Run | None = None, **_) -> HeadPruningConfig:
    """Accumulate Taylor importance on training data and choose the kept heads of every layer."""
    net = network(denoiser)
    x0, y = training_batch(denoiser, config.num_samples)
    taylor_gradients(denoiser, x0, y, config.thr, config.stride)
    scores = {n: importance(m) for n, m in layers(net).items()}
    net.zero_grad(set_to_none=True)
    return dataclasses.replace(config, keep=choose(scores, config.ratio, config.scope, config.min_heads))


def apply_head_pruning(denoiser, config: HeadPruningConfig) -> Handle:
    """Shrink every layer in ``config.keep`` to its kept heads, in place (layers inside blocks that
    depth pruning dropped are skipped, so both compose in either order); the handle restores them."""
    net = network(denoiser)
    mods, gone = layers(net), tuple(f"{n}." for n in dropped(net))
    keep = {n: k for n, k in config.keep.items() if not n.startswith(gone)}   # layers of dropped blocks: none
    missing = sorted(set(keep) - set(mods))
    if missing:
        raise KeyError(f"no self-attention layer named {missing[0]!r} in this network")
    params = lambda: sum(p.numel() for p in net.parameters())
    before, macs_before = params(), net_macs(net)
    heads_before = sum(m.num_heads for m in mods.values())
    saved = [(n, replace(net, n, shrunk(mods[n], torch.as_tensor(k)))) for n, k in keep.items()]
    stats = HeadStats(params_before=before, params_after=params(), blocks=len(saved), macs_before=macs_before,
                      macs_after=net_macs(net), heads_before=heads_before,
                      heads_after=sum(m.num_heads for m in layers(net).values()))

    def undo():
        for n, old in reversed(saved):
            replace(net, n, old)
    return Handle("head-pruning", [], stats=stats, on_remove=undo)


def resize_heads(net: nn.Module, plan: dict[str, int]) -> None:
    """Give a freshly built network the head counts of ``plan`` (weights are then loaded over them)."""
    mods = layers(net)
    for n, h in plan.items():
        if n not in mods:
            raise KeyError(f"pruning plan names attention layer {n!r}, which this network does not have")
        replace(net, n, shrunk(mods[n], torch.arange(h)))


def _check(denoiser) -> str | None:
    return None if layers(network(denoiser)) else "it has no effdiff self-attention layers"


register(Technique("head-pruning", "prune", HeadPruningConfig, apply_head_pruning, _check, needs=("keep",),
                   prepare_fn=prepare_head_pruning, eager=lambda n: HeadPruningConfig(ratio=0.5),
                   exact=lambda n: HeadPruningConfig(ratio=0.0, keep={}),
                   paper="Michel et al. 2019, Are Sixteen Heads Really Better than One?; Fang et al. 2023, Diff-Pruning"))
