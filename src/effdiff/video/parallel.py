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
counts what a rank sends. Block-causal streaming (``generate_stream``) splits each block's frames
with ``patch``: a rank attends to the cached clean frames (every rank holds the whole KV cache: a
finished block's keys are all-gathered once, in ``commit``) and to the all-gathered K/V of the block.
"""
from __future__ import annotations

import torch
from torch import nn

from ..distributed.comm import Comm, Exchange
from ..distributed.methods import SPLITS, parallel
from ..distributed.net import ParallelNet, shared_copy, with_net
from ..distributed.patch import ATTENTION, PatchConfig
from ..distributed.patch_layers import PatchAttention, Runtime
from .attention import MACS, AttentionCall, VideoAttention, dense_attention
from .model import VideoDiT

Tensor = torch.Tensor


def frame_share(frames: int, size: int, rank: int) -> tuple[int, int]:
    """[lo, hi): this rank's frames; the frame count must divide by the ranks (equal shares)."""
    if frames % size:
        raise ValueError(f"a clip (or streaming block) of {frames} frames does not split into {size} equal frame shares: "
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
    image methods' slab attention on RoPE'd q, k, v); counts dense attention's MACs. Streaming
    (``past``: cached frames, ``sink``: collect keys) with the all-gather (``patch``) only."""

    def __init__(self, attn: VideoAttention, rt: Runtime, attention: str):
        super().__init__()
        self.attn, self.slab = attn, ATTENTION[attention](attn, rt)

    def forward(self, x: Tensor, frames: Tensor, tokens: int, mask=None, layer: int = 0, past=None, sink=None):
        if mask is not None:
            raise NotImplementedError("frame parallelism does not run an attention mask (Block Diffusion training)")
        dense_only(self.attn)
        B, n, D = x.shape
        q, k, v = self.attn.project(x, frames, tokens)                              # [B, H, n, d]
        if past is None and sink is None:
            MACS.add(2 * B * n * n * self.slab.rt.size * D)         # q kᵀ and p v against all frames' keys
            out = self.slab.attend(*(t.transpose(1, 2) for t in (q, k, v)))         # [B, n, H, d]
        else:
            out = self.cached(q, k, v, frames, tokens, layer, past, sink).transpose(1, 2)
        return self.attn.proj(out.reshape(B, n, D))

    def cached(self, q, k, v, frames, tokens, layer, past, sink) -> Tensor:
        """Streaming: this block's K/V of every rank (into ``sink``), after the cached frames' -> [B, H, n, d]."""
        if not isinstance(self.slab, PatchAttention):
            raise NotImplementedError("frame-parallel streaming (KV cache) splits frames with 'patch' (all-gathered "
                                      "K/V) only; 'sequence' and 'ring' run the full-sequence mode")
        rt = self.slab.rt
        kv = torch.cat(rt.exchange.gather(id(self.slab), torch.stack([k, v]), rt.stale), dim=3)   # [2, B, H, N, d]
        every = frames[0] - rt.rank * len(frames) + torch.arange(rt.size * len(frames), device=frames.device)
        if sink is not None:
            sink.append((kv[0], kv[1]))
        k, v = kv[0], kv[1]
        if past is not None:                                          # a block_causal.Past: cached keys first
            k, v, every = past.join(k, v, every)
        return self.attn.processor(q, k, v, AttentionCall(frames, every, tokens, None, layer))


class FrameShare(nn.Module):
    """The video DiT's full-sequence forward (``cache``: ``stream_step``) on this rank's frames, global
    frame indices for RoPE; output frames gathered. ``commit`` stores every rank's keys in the cache."""

    def __init__(self, net: VideoDiT, rt: Runtime):
        super().__init__()
        self.net, self.rt = net, rt

    def share(self, x: Tensor, noise_labels, class_labels, start: int):
        """This rank's tokens, conditioning and global frame indices of the clip (or block) x."""
        net, comm = self.net, self.rt.comm
        net.check(x)
        B, F = x.shape[0], x.shape[2]
        lo, hi = frame_share(F, comm.size, comm.rank)
        c = net.frame_cond(net.labels_of(noise_labels, B, F, x)[:, lo:hi], class_labels)
        return net.tokens(x[:, :, lo:hi]), c, torch.arange(start + lo, start + hi, device=x.device)

    def forward(self, x: Tensor, noise_labels, class_labels: Tensor | None = None, cache=None, start: int = 0):
        h, c, frames = self.share(x, noise_labels, class_labels, start)
        past = None if cache is None else cache.past(start, x.shape[0])
        out = self.net.run(h, c, frames, past=past)                                  # [B, f*P, p*p*C]
        return self.net.untokens(torch.cat(self.rt.comm.all_gather(out), dim=1), x.shape[2])

    @torch.no_grad()
    def commit(self, x0: Tensor, clean_label: float, class_labels, cache, start: int) -> None:
        """``VideoDiT.commit`` split: every rank runs its frames and stores the whole block's keys/values."""
        h, c, frames = self.share(x0, clean_label, class_labels, start)
        kvs: list = []
        self.net.run(h, c, frames, past=cache.past(start), sink=kvs)
        if len(kvs) != len(self.net.blocks):
            raise RuntimeError("commit: an attention layer did not run; streaming needs every layer's keys")
        cache.append(kvs, torch.arange(start, start + x0.shape[2], device=x0.device))


class FrameNet(ParallelNet):
    """The video DiT run frame-parallel: same signature and output as ``net`` on every rank (full
    sequence; with ``patch`` also ``stream_step`` / ``commit`` on a KV cache every rank holds whole)."""

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

    def stream_step(self, x: Tensor, noise_labels, class_labels, cache, start: int) -> Tensor:
        return self(x, noise_labels, class_labels, cache=cache, start=start)

    def commit(self, x0: Tensor, clean_label: float, class_labels, cache, start: int) -> None:
        self.begin(False)                                           # keys from fresh K/V, outside the loop
        self.inner.commit(x0, clean_label, class_labels, cache, start)

    def block_diffusion(self, *args, **kwargs):
        raise NotImplementedError("frame parallelism is for generation: train with the VideoDiT itself")


def frame_parallel(denoiser, config: PatchConfig | None = None, comm: Comm | None = None, **fields):
    """``denoiser`` with its VideoDiT run frame-parallel over the ranks of ``comm`` (default: the world)."""
    config = config or PatchConfig(**fields)
    return with_net(denoiser, FrameNet(denoiser.net, config, comm or Comm()))


SPLITS[VideoDiT] = frame_parallel


def measure(method: str = "ring", mode: str = "full", frames: int = 16, clips: int = 2, steps: int = 12,
            scale: float = 4.0) -> dict:
    """Run on every rank (``launch(measure, 2, "ring", "full")``): the zoo's ``video-dit`` sampled (euler, the
    video bench's σ schedule; ``mode`` "full" or "stream") by this process alone and frame-parallel; the bytes
    this rank sent per denoising step (streaming: commits included) and max |Δz| between the two."""
    from .sampling import MODES, VideoModel, sigmas
    vm, comm = VideoModel.load(), Comm()
    noise, sig, y = vm.noise(clips, frames, 0), sigmas(steps), torch.arange(clips) % 10
    with torch.no_grad():
        one = MODES[mode](vm.den, noise, sig, "euler", y, scale)
        par = MODES[mode](parallel(vm.den, method, 1.0, comm), noise, sig, "euler", y, scale)
    calls = steps * (-(-frames // vm.den.net.config.block_frames) if mode == "stream" else 1)
    return {"method": method, "mode": mode, "ranks": comm.size, "frames": frames, "clips": clips, "steps": steps,
            "scale": scale, "bytes_per_step": comm.bytes_sent / calls, "max_abs_dz": float((par - one).abs().max()),
            "max_abs_z": float(one.abs().max())}

