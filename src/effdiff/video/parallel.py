"""Frame parallelism for the video DiT: each rank runs the network on its share of the clip's frames
(sequence parallelism along the frame axis, as xDiT does for video DiTs; Fang et al. 2024).

The video DiT's only cross-frame operation is its full 3-D attention: patch embedding, per-frame
adaLN conditioning, RoPE on the (global) frame index, the MLPs and the output layer all act on a
frame's own tokens. So rank r embeds frames ``[r·F/R, (r+1)·F/R)``, and every attention layer lets
its queries attend to the keys/values of all frames through the image methods' own slab attention
(``distributed/patch_layers.py``, ``distributed/ring.py``):

- ``patch`` (attention "gather"): K/V all-gathered (DistriFusion, Li et al. 2024); ``mode="stale"``
  uses the previous step's K/V of the other frames after ``warmup`` steps (displaced parallelism);
- ``sequence`` (Ulysses, Jacobs et al. 2023): an all-to-all turns frame shares x all heads into all
  frames x a share of heads and back — the all-to-all dimension switch that DSP (Zhao et al. 2024,
  Dynamic Sequence Parallelism) uses between spatial and temporal attention; with full 3-D attention
  there is one switch per layer, over heads;
- ``ring`` (Liu et al. 2023): K/V blocks around the ring of ranks, online-softmax merge.

The output frames are all-gathered, so every rank returns the whole clip. ``D.parallel(den, "ring",
scale)`` picks this split for a ``VideoDiT`` (``distributed.methods.SPLITS``); ``comm.bytes_sent``
counts what a rank sends. Full-sequence mode only: block-causal streaming (KV cache) refuses.
"""
from __future__ import annotations

import torch
from torch import nn

from ..distributed.comm import Comm, Exchange
from ..distributed.methods import SPLITS, parallel
from ..distributed.net import ParallelNet, shared_copy, with_net
from ..distributed.patch import ATTENTION, PatchConfig
from ..distributed.patch_layers import Runtime
from .attention import MACS, VideoAttention, dense_attention
from .model import VideoDiT

Tensor = torch.Tensor


def frame_share(frames: int, size: int, rank: int) -> tuple[int, int]:
    """[lo, hi): this rank's frames; the frame count must divide by the ranks (equal shares)."""
    if frames % size:
        raise ValueError(f"a clip of {frames} frames does not split into {size} equal frame shares: "
                         f"use a frame count divisible by {size} (or fewer ranks)")
    f = frames // size
    return rank * f, (rank + 1) * f


def dense_only(attn: VideoAttention) -> None:
    """Refuse a layer whose attention processor an attention technique (``adaspa``, ...) replaced."""
    if attn.processor is not dense_attention:
        name = getattr(attn.processor, "__name__", type(attn.processor).__name__)
        raise TypeError(f"frame parallelism computes dense attention; remove the attention technique ({name}) first")


class FrameAttention(nn.Module):
    """A ``VideoAttention`` on this rank's frames whose keys/values span every rank's frames (the
    image methods' slab attention on RoPE'd q, k, v); counts dense attention's MACs."""

    def __init__(self, attn: VideoAttention, rt: Runtime, attention: str):
        super().__init__()
        self.attn, self.slab = attn, ATTENTION[attention](attn, rt)

    def forward(self, x: Tensor, frames: Tensor, tokens: int, mask=None, layer: int = 0, past=None, sink=None):
        if mask is not None or past is not None or sink is not None:
            raise NotImplementedError("frame parallelism runs the video DiT's full-sequence mode only "
                                      "(no attention mask, no KV cache)")
        dense_only(self.attn)
        B, n, D = x.shape
        q, k, v = (t.transpose(1, 2) for t in self.attn.project(x, frames, tokens))    # [B, n, H, d]
        MACS.add(2 * B * n * n * self.slab.rt.size * D)             # q kᵀ and p v against all frames' keys
        return self.attn.proj(self.slab.attend(q, k, v).reshape(B, n, D))


class FrameShare(nn.Module):
    """``VideoDiT.forward`` on this rank's frames (global frame indices for RoPE), output frames gathered."""

    def __init__(self, net: VideoDiT, rt: Runtime):
        super().__init__()
        self.net, self.rt = net, rt

    def forward(self, x: Tensor, noise_labels, class_labels: Tensor | None = None) -> Tensor:
        net, comm = self.net, self.rt.comm
        net.check(x)
        B, F = x.shape[0], x.shape[2]
        lo, hi = frame_share(F, comm.size, comm.rank)
        c = net.frame_cond(net.labels_of(noise_labels, B, F, x)[:, lo:hi], class_labels)
        out = net.run(net.tokens(x[:, :, lo:hi]), c, torch.arange(lo, hi, device=x.device))   # [B, f*P, p*p*C]
        return net.untokens(torch.cat(comm.all_gather(out), dim=1), F)


class FrameNet(ParallelNet):
    """The video DiT run frame-parallel: same signature and output as ``net`` on every rank."""

    def __init__(self, net: VideoDiT, config: PatchConfig, comm: Comm):
        if not isinstance(net, VideoDiT):
            raise TypeError(f"frame parallelism splits a VideoDiT's frames, not a {type(net).__name__}")
        if config.stale_groupnorm:
            raise ValueError("stale_groupnorm: the video DiT has no GroupNorm")
        for blk in net.blocks:
            dense_only(blk.attn)
        rt = Runtime(comm, Exchange(comm))
        inner = shared_copy(net)
        for blk, own in zip(inner.blocks, net.blocks):
            blk.attn = FrameAttention(own.attn, rt, config.attention)   # the original layer: its processor, live
        super().__init__(FrameShare(inner, rt), config.mode == "stale", config.warmup)
        self.config, self.parallel_config, self.comm, self.rt = net.config, config, comm, rt

    def reset(self) -> None:
        self.rt.exchange.reset()

    def begin(self, stale: bool) -> None:
        self.rt.stale = stale

    def stream_step(self, *args, **kwargs):
        raise NotImplementedError("frame parallelism runs the full-sequence mode only; block-causal streaming "
                                  "(KV cache) is not split across ranks: generate with mode='full', or use 'cfg'")

    commit = block_diffusion = stream_step


def frame_parallel(denoiser, config: PatchConfig | None = None, comm: Comm | None = None, **fields):
    """``denoiser`` with its VideoDiT run frame-parallel over the ranks of ``comm`` (default: the world)."""
    config = config or PatchConfig(**fields)
    return with_net(denoiser, FrameNet(denoiser.net, config, comm or Comm()))


SPLITS[VideoDiT] = frame_parallel


def measure(method: str = "ring", frames: int = 16, clips: int = 2, steps: int = 12, scale: float = 4.0) -> dict:
    """Run on every rank (``launch(measure, 2, "ring")``): the zoo's ``video-dit`` sampled full-sequence (euler,
    the video bench's σ schedule) by this process alone and frame-parallel; bytes this rank sent per step
    and max |Δz| between the two."""
    from ..timesteps import karras
    from .sampling import VideoModel, generate_full
    vm, comm = VideoModel.load(), Comm()
    noise, sig, y = vm.noise(clips, frames, 0), karras(steps, sigma_min=0.002, sigma_max=80.0), torch.arange(clips) % 10
    with torch.no_grad():
        one = generate_full(vm.den, noise, sig, "euler", y, scale)
        par = generate_full(parallel(vm.den, method, 1.0, comm), noise, sig, "euler", y, scale)
    return {"method": method, "ranks": comm.size, "frames": frames, "clips": clips, "steps": steps, "scale": scale,
            "bytes_per_step": comm.bytes_sent / steps, "max_abs_dz": float((par - one).abs().max()),
            "max_abs_z": float(one.abs().max())}

