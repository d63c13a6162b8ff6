"""Generating clips: full-sequence (every frame denoised together) or streamed block by block
through a KV cache (``block_causal``), with any effdiff solver and schedule.

    vm = VideoModel.load()                               # the zoo's video-dit + its autoencoder
    vm = effdiff.zoo.load("video-dit")                   # the same (model kind ``video``)
    z = vm.generate(noise, sigmas, "euler", labels, mode="stream", on_block=show)
    x = vm.decode(z)                                     # [N, 1, T, 32, 32]
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .. import assets, kinds
from ..denoisers import Denoiser, guided
from ..process import from_config
from ..sampling import sample
from ..timesteps import karras, resample
from .block_causal import KVCache, context_label

WEIGHTS = Path(__file__).parent / "weights"        # the video evaluator's files
ZOO_NAME = "video-dit"


SCHEDULE = "karras(0.002, 80)"                     # the σ schedule the video bench, CLI and cards sample on


def sigmas(steps: int) -> torch.Tensor:
    """``SCHEDULE`` at ``steps`` steps."""
    return karras(steps, sigma_min=0.002, sigma_max=80.0)


def clip_noise(n: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Unit Gaussian noise [n, *shape]; clip i draws from seed (seed, i): same clip at any batch size."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + i))
                        for i in range(n)])


class BlockNet(nn.Module):
    """The network a ``Denoiser`` sees while one block streams: ``net.stream_step`` on a cache.
    ``free_second_half``: a batch twice the cache's (guidance's ``[x; x]``) runs its second half, the
    unconditional branch, without the cache: as a first block, with no context (history guidance)."""

    def __init__(self, net, cache: KVCache, start: int, free_second_half: bool = False):
        super().__init__()
        self.net, self.cache, self.start, self.free = net, cache, start, free_second_half
        self.empty = KVCache(len(cache.k), cache.block_frames, cache.window_blocks) if free_second_half else None

    def forward(self, x, noise_labels, class_labels=None):
        h = self.cache.rows
        if self.free and h and x.shape[0] == 2 * h:
            n = torch.as_tensor(noise_labels)
            halves = [(x[i:i + h], n[i:i + h] if n.ndim else n, None if class_labels is None else class_labels[i:i + h])
                      for i in (0, h)]
            return torch.cat([self.net.stream_step(*halves[0], self.cache, self.start),
                              self.net.stream_step(*halves[1], self.empty, self.start)])
        return self.net.stream_step(x, noise_labels, class_labels, self.cache, self.start)


class KnownFrames(nn.Module):
    """``denoiser`` with a clip's first frames known: its estimate of frames [0, k) is replaced by ``x0`` [B, C, k,
    h, w] (replacement conditioning, as in inpainting). Started from x0 + σ0 ε on those frames, a deterministic
    solver, whose step is affine in the estimate, keeps them at x0 + σ ε and ends on x0 exactly; the other frames
    see them at the clip's noise level, as in training."""

    def __init__(self, denoiser, x0: torch.Tensor):
        super().__init__()
        self.denoiser, self.x0 = denoiser, x0
        self.cond_classes = getattr(denoiser, "cond_classes", 0)

    def forward(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        out = self.denoiser(x, sigma, cond).clone()
        k = self.x0.shape[2]
        out[:, :, :k] = self.x0.to(out.dtype)
        return out


def generate_full(den: Denoiser, noise: torch.Tensor, sigmas, solver: str = "euler", cond=None, scale: float = 1.0,
                  **kw) -> torch.Tensor:
    """All frames at once: ``ed.sample`` on the clip [N, C, T, h, w] (noise of unit scale); ``scale``:
    classifier-free guidance."""
    return sample(guided(den, scale), noise * sigmas[0], sigmas, solver, cond=cond, **kw)


def generate_stream(den: Denoiser, noise: torch.Tensor, sigmas, solver: str = "euler", cond=None,
                    scale: float = 1.0, on_block: Callable | None = None, lookahead: int = 0,
                    lookahead_past: int = 0, overlap: int = 0, context_noise: float = 0.0, history_guidance: int = 0,
                    overlap_second: int = 0, scale_second: float = 0.0, lookahead_blocks: int = 0,
                    lookahead_steps: int = 0, carry: int = 0, scale_blocks: float = 0.0, **kw) -> torch.Tensor:
    """Block by block: each block of ``block_frames`` frames sampled by ``ed.sample`` while attending to
    the cached clean blocks, then committed to the cache once; ``on_block(start, z_block)`` sees each block
    as it finishes. With classifier-free guidance each branch has its own context, as in training, where a
    dropped label is dropped for the whole sequence: the block is committed twice in one batched call, with
    its label and with the null label (cache ``[cond; null]``), and guidance's batched ``[x; x]`` call reads
    the conditional keys in its first half and the unconditional keys in its second.

    ``lookahead`` L > ``block_frames``: the first block, which has no context, is sampled as the first frames of
    a full-sequence solve of the first L frames (the same noise; the other L - block_frames frames are discarded
    and streamed as usual). A block of 4 frames on its own draws its label less faithfully than 16 frames
    denoised together (docs/video.md); the price is the first frame's latency, which becomes that of an
    L-frame full-sequence clip. 0: off.

    ``lookahead_past`` P > 0: the first block is taken from inside that solve instead of its start: the solve
    covers P frames before the clip (discarded) and the clip's first L - P frames, and the first block is its
    frames P .. P + block_frames. A full-sequence solve moves its edge frames more slowly than its inner ones, and
    the stream carries the first block's motion on. The P past frames start from the clip's noise of frames
    L - P .. L - 1, which that solve does not otherwise use (deterministic, the same at any batch size).

    ``lookahead_blocks`` K > 1: the stream keeps the lookahead solve's first K blocks (at most its L - P frames),
    not only its first: they stream out together when that solve finishes, at no extra cost, and the first streamed
    block has K blocks of context. With one block of context a block draws its label less faithfully than with
    two or more (docs/video.md, "Where the label is lost"). 0 or 1: the first block only.

    ``lookahead_steps`` S > 0: the lookahead solve takes S steps, on ``sigmas`` resampled to S steps
    (``timesteps.resample``: a Karras grid stays a Karras grid); the first frame waits for that solve, so its
    latency scales with S. The later blocks keep ``sigmas``. 0: the stream's own steps.

    ``overlap`` O > 0: each later block is sampled together with the next O frames of the clip (from their own
    noise; discarded, then sampled again as the next block): a block's last frame has no future inside its block
    and moves as slowly as a full sequence's last frame, every block long. The last block has no next frames.
    Each block costs (block_frames + O) / block_frames as much.

    ``carry`` 1 (needs ``overlap``): a block's first frame is not sampled again but kept from the previous solve:
    the first of its next frames (a block's overlap, or the lookahead solve's frame after its kept blocks), held
    fixed while the block is sampled (``KnownFrames``), at the same cost; with overlap 1 the kept frame was its solve's
    last frame, with 2 or more an inner one. Meant to join a block to the one before as smoothly as frames inside one
    solve, it did the opposite on the video DiT: the other frames see the kept one only through its noise and the
    boundary jittered more (docs/video.md, "Where the stream's extra acceleration is"). 0: off.

    ``overlap_second`` O2 > 0: the second block, the only later block with a single block of context, is sampled with
    O2 next frames instead of O (a one-off cost: the stream stays linear in length). 0: ``overlap``.

    ``scale_second`` w2 > 0: the second block is sampled at guidance scale w2 instead of ``scale`` (needs guidance).
    With a single block of context it draws its label less faithfully than the full sequence does (docs/video.md,
    "Where the label is lost"), and the later blocks inherit it. 0: ``scale``.

    ``scale_blocks`` w > 0: every block the stream samples itself (not the lookahead solve, whose kept blocks keep
    ``scale``; the second block at ``scale_second`` when that is set) at guidance scale w instead of ``scale`` (needs
    guidance). A streamed block follows its context's digit; guidance pulls it toward its label against a null-label
    branch that sees the same frames. 0: ``scale``.

    ``context_noise`` s in (0, 1): each finished block is committed noised to flow time s, with that noise label
    (Diffusion Forcing's noisy history, for a model trained with ``VideoLoss.context_noise`` >= s): the model
    then trusts a generated context less than a clean one. The noise is the block's own starting noise with its
    frames, rows and columns reversed and its channels rolled (a fixed permutation: a standard Gaussian,
    deterministic per clip, the same at any batch size); 0: a clean context.

    ``history_guidance`` 1: under guidance, the unconditional branch of each later block drops its context as
    well as its label (History Guidance's plain form, Song et al. 2025; the model knows a block without context
    from its first blocks): guidance then pulls each block toward its label *and* its context, where a null-label
    branch that sees the context already draws the context's digit and guides less. Each block is committed once,
    with its label (no paired cache); the unconditional branch attends to nothing before its block. 0: off."""
    for name, v in (("lookahead", lookahead), ("lookahead_past", lookahead_past), ("overlap", overlap),
                    ("overlap_second", overlap_second), ("lookahead_blocks", lookahead_blocks),
                    ("lookahead_steps", lookahead_steps)):
        if not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be an int >= 0 (frames), got {v!r}")
    if history_guidance not in (0, 1):
        raise ValueError(f"history_guidance must be 0 or 1, got {history_guidance!r}")
    if not isinstance(context_noise, (int, float)) or not 0 <= context_noise < 1:
        raise ValueError(f"context_noise must be a flow time in [0, 1), got {context_noise!r}")
    for name, v in (("scale_second", scale_second), ("scale_blocks", scale_blocks)):
        if not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{name} must be a guidance scale >= 0 (0: the stream's scale), got {v!r}")
    if lookahead_past and not lookahead:
        raise ValueError(f"lookahead_past {lookahead_past} needs a lookahead")
    if lookahead_blocks > 1 and not lookahead:
        raise ValueError(f"lookahead_blocks {lookahead_blocks} needs a lookahead")
    if lookahead_steps and not lookahead:
        raise ValueError(f"lookahead_steps {lookahead_steps} needs a lookahead")
    if carry not in (0, 1):
        raise ValueError(f"carry must be 0 or 1, got {carry!r}")
    if carry and not overlap:
        raise ValueError("carry keeps a block's first frame from the previous solve's next frames: it needs an overlap")
    net = den.net
    cfg = net.config
    B, T = noise.shape[0], noise.shape[2]
    cache = KVCache(cfg.depth, cfg.block_frames, cfg.window_blocks)
    guiding = scale != 1.0 and cond is not None and den.cond_classes > 0
    paired = guiding and not history_guidance
    for name, v, what in (("scale_second", scale_second, "the second block's"),
                          ("scale_blocks", scale_blocks, "the streamed blocks'")):
        if v and not guiding:
            raise ValueError(f"{name} sets {what} guidance scale: the stream needs guidance (scale != 1, labels, a "
                             "class-conditional model)")
    if context_noise and den.process.name != "flow":
        raise ValueError(f"context_noise is a flow time (the context is noised as flow noises it); the model's "
                         f"process is {den.process.name!r}")
    clean = context_label(den.process, context_noise)          # the committed blocks' noise label
    out, head, known = [], None, None                 # head: the lookahead solve's kept blocks; known: a carried frame
    for start in range(0, T, cfg.block_frames):
        bden = Denoiser(BlockNet(net, cache, start, bool(history_guidance and guiding)), den.process, den.prediction,
                        den.cond_classes)
        if start == 0 and min(lookahead, T) > cfg.block_frames:
            L = min(lookahead, T)
            P = min(lookahead_past, L - cfg.block_frames)
            z = torch.cat([noise[:, :, L - P:L], noise[:, :, :L - P]], 2) if P else noise[:, :, :L]
            head_sigmas = resample(sigmas, lookahead_steps) if lookahead_steps else sigmas
            head = sample(guided(den, scale), z * sigmas[0], head_sigmas, solver, cond=cond, **kw)[:, :, P:]
            kept = min(max(lookahead_blocks, 1), head.shape[2] // cfg.block_frames) * cfg.block_frames
            known = head[:, :, kept:kept + 1] if carry and head.shape[2] > kept else None
            head = head[:, :, :kept]
        if head is not None and start < head.shape[2]:
            zb = head[:, :, start:start + cfg.block_frames]
        else:
            second = start == cfg.block_frames          # the one later block with a single block of context
            extra = 0 if start == 0 else (overlap_second or overlap) if second else overlap
            w = scale_second if scale_second and second else scale_blocks or scale
            end = min(start + cfg.block_frames + extra, T)
            x, bd = noise[:, :, start:end] * sigmas[0], guided(bden, w)
            if known is not None:
                x[:, :, :1] += known.to(x.dtype)
                bd = KnownFrames(bd, known)
            z = sample(bd, x, sigmas, solver, cond=cond, **kw)
            if known is not None:
                z[:, :, :1] = known                     # it ends there up to rounding: the frame as carried
            zb = z[:, :, :cfg.block_frames]
            known = z[:, :, cfg.block_frames:cfg.block_frames + 1] if carry and z.shape[2] > cfg.block_frames else None
        if on_block is not None:                      # the block is out before its keys are cached
            on_block(start, zb)
        out.append(zb)
        if start + cfg.block_frames < T:
            x0, labels = zb.to(next(net.parameters()).dtype), bden.labels(cond, B, zb.device)
            if context_noise:
                eps = noise[:, :, start:start + cfg.block_frames].flip(2, 3, 4).roll(1, 1).to(x0.dtype)
                x0 = (1 - context_noise) * x0 + context_noise * eps
            if paired:
                x0, labels = torch.cat([x0, x0]), torch.cat([labels, bden.labels(None, B, zb.device)])
            net.commit(x0, clean, labels, cache, start)
    return torch.cat(out, 2)


MODES = {"full": generate_full, "stream": generate_stream}
# generate_stream's options and their types (frames, and the context's flow time; 0: off)
STREAM_OPTIONS = {"lookahead": int, "lookahead_past": int, "overlap": int, "context_noise": float,
                  "history_guidance": int, "overlap_second": int, "scale_second": float, "lookahead_blocks": int,
                  "lookahead_steps": int, "carry": int, "scale_blocks": float}
LOOKAHEAD_ONLY = ("lookahead_past", "lookahead_blocks", "lookahead_steps")     # options that need a lookahead
OVERLAP_ONLY = ("carry",)                                                       # options that need an overlap


class VideoModel:
    """A trained video DiT as a latent denoiser plus its frame codec."""

    def __init__(self, den: Denoiser, codec, meta: dict, stream_options: dict | None = None):
        self.den, self.codec, self.meta = den, codec, meta
        self.stream_options = dict(stream_options or {})    # defaults of generate_stream's STREAM_OPTIONS
        self.attention = None     # the Handle of the card's attention pattern (``card_attention``); .remove(): dense

    @classmethod
    def load(cls, path=None) -> "VideoModel":
        """From ``model.{safetensors,json}`` (default: the zoo's ``video-dit``, SHA-256 verified)."""
        from .. import checkpoint as ckpt
        if path is None:
            return kinds.load(ZOO_NAME)
        tensors, meta = ckpt.load(Path(path))
        return build(tensors, meta, str(path))

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        c = self.den.net.config
        return c.in_channels, c.frame_size, c.frame_size

    def noise(self, n: int, frames: int, seed: int) -> torch.Tensor:
        C, h, w = self.latent_shape
        return clip_noise(n, (C, frames, h, w), seed)

    @torch.no_grad()
    def generate(self, noise, sigmas, solver="euler", cond=None, mode: str = "stream", **kw) -> torch.Tensor:
        """``mode`` "full" or "stream"; a stream's options default to ``self.stream_options``."""
        if mode not in MODES:
            raise ValueError(f"unknown generation mode {mode!r}; known: {', '.join(MODES)}")
        if mode == "stream":
            kw = self.stream_kwargs(**kw)
        return MODES[mode](self.den, noise, sigmas, solver, cond, **kw)

    def stream_kwargs(self, **kw) -> dict:
        """The options a stream runs with: ``kw`` over the model's defaults (``stream_options``); a call that turns
        the lookahead or the overlap off drops the defaults that need one (``LOOKAHEAD_ONLY``, ``OVERLAP_ONLY``)."""
        defaults = dict(self.stream_options)
        for switch, needing in (("lookahead", LOOKAHEAD_ONLY), ("overlap", OVERLAP_ONLY)):
            if not kw.get(switch, defaults.get(switch, 0)):
                for k in needing:
                    if k not in kw:
                        defaults.pop(k, None)
        return {**defaults, **kw}

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.codec.decode(z).clamp(-1, 1)

    def card(self) -> dict:
        return json.loads(json.dumps(self.meta.get("card", {})))


@kinds.register("video")
def build(tensors: dict, meta: dict, where: str) -> VideoModel:
    """Model kind ``video``: a video DiT export as a ``VideoModel`` (EMA weights, eval mode, its frame codec)."""
    from .. import checkpoint as ckpt
    from .latents import FrameCodec
    if "video" not in meta:
        raise ckpt.CheckpointError(f"{where}: a video model export needs its 'video' metadata (autoencoder, scale)")
    net = assets.network(tensors, meta, where)
    den = Denoiser(net, from_config(meta["process"]), meta["prediction"], meta["num_classes"])
    vm = VideoModel(den.eval(), FrameCodec.zoo(meta["video"]["autoencoder"]), meta,
                    card_stream_options(meta.get("card", {}), where))
    attention = card_attention(meta.get("card", {}), where)
    if attention is not None:                        # a sparse fine-tune samples with the pattern it was trained under
        from .. import techniques as T
        from .sparse import register
        register()
        vm.attention = T.get(attention[0]).apply(den, attention[1])
    return vm


def card_attention(card: dict, where: str = "card") -> tuple[str, dict] | None:
    """A card's attention pattern (``attention``: {"technique": a ``video/sparse.py`` technique, "config": {...}}),
    which ``build`` applies on load: the pattern a sparse fine-tune was trained under and its registered confirm
    judged. None for a dense model."""
    att = card.get("attention")
    if not att:
        return None
    from .sparse import NAMES
    if att.get("technique") not in NAMES or not isinstance(att.get("config", {}), dict):
        raise ValueError(f"{where}: its card's attention must name one of {', '.join(NAMES)} and a config dict, "
                         f"got {att!r}")
    return att["technique"], dict(att.get("config", {}))


def card_stream_options(card: dict, where: str = "card") -> dict:
    """A card's default stream options (``stream_options``: {name: value} of ``STREAM_OPTIONS``, those its
    registered confirm chose; sampling settings, not weights, so they live in the card like its guidance)."""
    opts = card.get("stream_options") or {}
    unknown = set(opts) - set(STREAM_OPTIONS)
    if unknown:
        raise ValueError(f"{where}: unknown stream options {sorted(unknown)} in its card; known: "
                         f"{', '.join(STREAM_OPTIONS)}")
    return {k: STREAM_OPTIONS[k](v) for k, v in opts.items()}
