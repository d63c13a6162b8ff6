"""Training the latent video DiT on moving digits: ``python -m effdiff.video.train --preset video-dit``.

Rectified flow with velocity prediction (Liu et al. 2023; Lipman et al. 2023), logit-normal t
(Esser et al. 2024), one objective of two forms per step (``block_fraction`` picks, from the run's
generator): the full-sequence form (all T frames at one noise level, bidirectional attention) and
Block Diffusion's vectorized form (Arriola et al. 2025: one noise level per block, ``[x_t | x_0]``
under ``bd_mask``). One network therefore runs both as a full-sequence and as a streaming
generator, which is what the ``video`` bench compares. Batches are random ``frames``-long windows of
pre-encoded 20-frame clips (``latents.latent_clips``), played forwards or backwards (bouncing is
time-reversible).
"""
from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass

import torch

from .. import checkpoint as ckpt
from ..process import from_config
from ..training.trainer import Trainer
from .block_causal import context_label

DATA = "moving-digits-latent"


@dataclass
class VideoLoss:
    """``TrainConfig.loss`` of a video run."""
    p_mean: float = 0.0           # logit-normal t: sigmoid(N(p_mean, p_std))
    p_std: float = 1.0
    block_fraction: float = 0.5   # share of steps in Block Diffusion's form (the rest: full sequence)
    # share of steps on first blocks alone: each clip's blocks as separate ``block_frames``-long clips in the
    # full-sequence form, which is what streaming's first block is (it has no context); 0: off
    first_block_fraction: float = 0.0
    # Block Diffusion form: each context block noised to t ~ U(0, context_noise) and labelled so (Diffusion
    # Forcing's noisy history; sampled with generate_stream's context_noise); 0: clean context, as Block Diffusion
    context_noise: float = 0.0
    # share of the Block Diffusion form's steps on two-block clips (each clip cut into clips of 2 blocks: a block
    # without context and one with a single block of it, streaming's second block; same tokens per step); 0: off
    two_block_share: float = 0.0
    # distillation from a dense teacher (the --init model), as Sliding Tile Attention's paper fine-tunes under its
    # pattern: data_weight * the data loss + distill * |v - v_teacher|^2 + distill_attention * the mean over layers of
    # |attention output - the teacher's|^2, on the same noisy inputs; 0: off (the teacher is never run)
    distill: float = 0.0
    distill_attention: float = 0.0
    data_weight: float = 1.0
    frames: int = 16              # clip length trained on
    clips: int = 4000             # encoded training clips (one per training digit on average)
    clip_frames: int = 20         # frames per encoded clip (windows of `frames` are drawn from it)

    def __post_init__(self):
        if (not 0 <= self.block_fraction <= 1 or not 0 <= self.first_block_fraction <= 1 - self.block_fraction
                or self.p_std <= 0 or not 1 <= self.frames <= self.clip_frames or not 0 <= self.context_noise < 1
                or not 0 <= self.two_block_share <= 1 or min(self.distill, self.distill_attention, self.data_weight) < 0
                or self.distill + self.distill_attention + self.data_weight == 0):
            raise ValueError("need 0 <= block_fraction <= 1, 0 <= first_block_fraction <= 1 - block_fraction, "
                             "p_std > 0, 1 <= frames <= clip_frames, 0 <= context_noise < 1 and "
                             "0 <= two_block_share <= 1, and non-negative loss weights, not all 0")


class VideoTrainer(Trainer):
    """Trainer for ``task="video"`` (``arch="video-dit"``, ``data="moving-digits-latent"``)."""
    TASKS = ("video",)

    def __init__(self, config, run_dir, progress: bool = True):
        if config.task != "video":
            raise ValueError(f"VideoTrainer trains task 'video', got {config.task!r}")
        self.vloss = VideoLoss(**config.loss)
        self.teacher = None          # a distilled fine-tune's dense teacher (set_teacher)
        super().__init__(config, run_dir, progress)
        self.process = from_config(config.process)
        if self.process.name != "flow" or config.prediction != "velocity":
            raise ValueError("the video trainer trains flow matching with velocity prediction")

    def _load_data(self):
        from .latents import latent_clips
        if self.cfg.data != DATA:
            raise ValueError(f"video training data must be {DATA!r}, got {self.cfg.data!r}")
        self.toy = None
        self.x, self.y = latent_clips("train", self.vloss.clips, self.vloss.clip_frames, seed=0)

    def batch(self):
        b, T, L = self.cfg.batch_size, self.vloss.frames, self.x.shape[2]
        idx = torch.randint(0, len(self.x), (b,), generator=self.gen)
        start = torch.randint(0, L - T + 1, (b,), generator=self.gen)
        flip = torch.rand(b, generator=self.gen) < 0.5
        clips = [self.x[i, :, s:s + T] for i, s in zip(idx.tolist(), start.tolist())]
        x = torch.stack([c.flip(1) if f else c for c, f in zip(clips, flip.tolist())])
        return x, self.y[idx]

    def draw_t(self, n: int) -> torch.Tensor:
        p = self.process
        t = torch.sigmoid(self.vloss.p_mean + self.vloss.p_std * torch.randn(n, generator=self.gen))
        return t.clamp(p.t_min, p.t_max)

    def loss_on(self, x, y) -> torch.Tensor:
        """Velocity MSE of one batch in the form the generator picks (x: clean latents [B, C, T, h, w])."""
        B, T = x.shape[0], x.shape[2]
        if self.num_classes > 0 and self.cfg.p_uncond > 0:
            drop = torch.rand(y.shape, generator=self.gen) < self.cfg.p_uncond
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        u = float(torch.rand((), generator=self.gen))
        block = u < self.vloss.block_fraction
        bf = self.net.config.block_frames
        if not block and u < self.vloss.block_fraction + self.vloss.first_block_fraction and T > bf:
            x, y = cut(x, y, bf)                            # first blocks: [B, C, nb*bf] -> [B*nb, C, bf]
            B, T = x.shape[0], bf
        elif block and u < self.vloss.block_fraction * self.vloss.two_block_share and T >= 2 * bf:
            x, y = cut(x, y, 2 * bf)                        # two-block clips: [B, C, nc*2bf] -> [B*nc, C, 2bf]
            B, T = x.shape[0], 2 * bf
        if block:
            t = per_block(self.draw_t(B * -(-T // bf)).reshape(B, -1), bf, T)            # [B, T]
        else:
            t = self.draw_t(B)[:, None].expand(B, T)
        eps = torch.randn(x.shape, generator=self.gen)
        xt = flow_noised(x, t, eps)
        c_noise = self.process.c_noise(t.double()).float()
        if block:
            ctx, clean = self.context(x, bf)
            run = lambda net: net.block_diffusion(xt, ctx, c_noise, clean, y)
        else:
            run = lambda net: net(xt, c_noise[:, 0], y)
        v = self.vloss
        teach = bool(v.distill or v.distill_attention)
        if teach and self.teacher is None:
            raise RuntimeError("distill / distill_attention need a teacher: VideoTrainer.set_teacher(path)")
        with attention_outputs(self.net) if teach else contextlib.nullcontext() as att:
            out = run(self.net)
        loss = v.data_weight * (out - (eps - x)).pow(2).mean() if v.data_weight else 0.0
        if not teach:
            return loss
        with torch.no_grad(), attention_outputs(self.teacher) as att_t:
            out_t = run(self.teacher)
        loss = loss + v.distill * (out - out_t).pow(2).mean()
        if v.distill_attention:
            loss = loss + v.distill_attention * sum((a - b).pow(2).mean() for a, b in zip(att, att_t)) / len(att)
        return loss

    def set_teacher(self, path) -> None:
        """The dense teacher of a distilled fine-tune: the exported model at ``path`` (weights only; frozen, and its
        attention stays the exact processor whatever technique the trained network runs under)."""
        import copy
        from .attention import dense_attention
        from .sparse import attention_modules
        teacher = copy.deepcopy(self.net).eval().requires_grad_(False)
        ckpt.load_state(teacher, ckpt.load(path)[0], "", where=str(path))
        for m in attention_modules(teacher):
            m.processor = dense_attention
        self.teacher = teacher

    def context(self, x, bf: int):
        """The Block Diffusion form's context and its noise label(s): the clean clip (a float label), or with
        ``context_noise`` each block noised to its own t ~ U(0, context_noise) (labels [B, T])."""
        if not self.vloss.context_noise:
            return x, context_label(self.process)
        B, T = x.shape[0], x.shape[2]
        tc = per_block(self.vloss.context_noise * torch.rand(B, -(-T // bf), generator=self.gen), bf, T)
        return flow_noised(x, tc, torch.randn(x.shape, generator=self.gen)), self.process.c_noise(tc.double()).float()

    def export(self, metrics: dict | None = None):
        from .latents import FrameCodec
        path = super().export(metrics)
        tensors, meta = ckpt.load(path)
        codec = FrameCodec.zoo()
        meta["prediction"] = self.cfg.prediction           # Trainer.export records it for task "diffusion" only
        meta["kind"] = "video"                              # effdiff.kinds: loads as a VideoModel
        meta["video"] = {"autoencoder": codec.name, "scale": codec.scale, "canvas": 32, "layout": "B C T H W",
                         "frames": self.vloss.frames, "data": "effdiff.video.data.moving_digits('train')"}
        meta["card"]["command"] = f"effdiff train --preset {self.cfg.name} --out DIR  (or python -m effdiff.video.train)"
        ckpt.save(path, tensors, meta)
        return path


@contextlib.contextmanager
def attention_outputs(net):
    """``with attention_outputs(net) as outs:`` collects each attention layer's output, in layer order."""
    from .sparse import attention_modules
    outs: list = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: outs.append(out)) for m in attention_modules(net)]
    try:
        yield outs
    finally:
        for h in hooks:
            h.remove()


def per_block(v, bf: int, T: int):
    """One value per block [B, nb] -> per frame [B, T] (``bf`` frames a block; a last partial block cut)."""
    return v.repeat_interleave(bf, 1)[:, :T]


def flow_noised(x, t, eps):
    """Clips x [B, C, T, h, w] at flow time t per frame [B, T]: (1 - t) x + t eps."""
    tt = t[:, None, :, None, None]
    return (1 - tt) * x + tt * eps


def cut(x, y, frames: int):
    """Clips [B, C, T, h, w] (labels [B]) cut into their T // frames consecutive ``frames``-long clips, in order
    (clip i's pieces at rows i*n .. i*n + n - 1); a remainder is dropped."""
    n = x.shape[2] // frames
    return x[:, :, :n * frames].unflatten(2, (n, frames)).transpose(1, 2).flatten(0, 1), y.repeat_interleave(n)


def main(argv=None) -> None:
    from .presets import preset
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="video-dit")
    ap.add_argument("--out", required=True)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--init", default=None, help="start from an exported video model's weights (a continuation)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seed", type=int, default=None, help="the run's seed (a continuation: not the first run's batches again)")
    ap.add_argument("--first-block-fraction", type=float, default=None,
                    help="share of steps on first blocks alone (VideoLoss.first_block_fraction)")
    ap.add_argument("--block-fraction", type=float, default=None, help="share of steps in Block Diffusion's form")
    ap.add_argument("--two-block-share", type=float, default=None,
                    help="share of the Block Diffusion form's steps on two-block clips (VideoLoss.two_block_share)")
    ap.add_argument("--context-noise", type=float, default=None,
                    help="Block Diffusion form: context blocks noised to t ~ U(0, this) (VideoLoss.context_noise)")
    ap.add_argument("--attention", default=None,
                    help="train under a sparse attention pattern, e.g. 'sliding-tile:window=3' (a sparse fine-tune, as "
                         "Sliding Tile Attention fine-tunes for its higher sparsities); sample it with the same pattern")
    ap.add_argument("--distill", type=float, default=None,
                    help="weight of |v - v_teacher|^2, the --init model as a dense teacher (VideoLoss.distill)")
    ap.add_argument("--distill-attention", type=float, default=None,
                    help="weight of the per-layer attention-output loss against that teacher (VideoLoss.distill_attention)")
    ap.add_argument("--data-weight", type=float, default=None, help="weight of the data loss (VideoLoss.data_weight)")
    ap.add_argument("--stop-after", type=int, default=None,
                    help="end (and export) at this step, before --steps; the schedule still runs to --steps")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    over = {k: v for k, v in (("steps", a.steps), ("lr", a.lr), ("seed", a.seed)) if v is not None}
    loss = {k: v for k, v in (("first_block_fraction", a.first_block_fraction), ("block_fraction", a.block_fraction),
                              ("context_noise", a.context_noise), ("two_block_share", a.two_block_share),
                              ("distill", a.distill), ("distill_attention", a.distill_attention),
                              ("data_weight", a.data_weight))
            if v is not None}
    if loss:
        over["loss"] = {**preset(a.preset).loss, **loss}
    cfg = preset(a.preset, **over)
    tr = VideoTrainer(cfg, a.out, progress=True)
    if a.init and not a.resume:
        init_from(tr, a.init)
    if tr.vloss.distill or tr.vloss.distill_attention:
        if not a.init:
            raise SystemExit("--distill / --distill-attention distil from the --init model: give --init")
        tr.set_teacher(a.init)
    if a.attention:
        sparse_training(tr, a.attention)
    if not (a.resume and a.stop_after is not None and tr.restore() and tr.step >= a.stop_after):
        tr.run(resume=a.resume, stop_after=a.stop_after)     # (a checkpoint already at --stop-after: export it)
    extra = {"initialised_from": str(a.init)} if a.init else {}
    if a.attention:
        extra["trained_with_attention"] = a.attention
    if tr.teacher is not None:
        extra["distilled_from"] = str(a.init)
    if tr.step < cfg.steps:
        extra["stopped_at_step"] = tr.step
    print("exported", tr.export(extra or None))


def sparse_training(tr: VideoTrainer, use: str):
    """Put the training network under the attention technique ``use`` ('name:key=value,...') for the whole run
    -> its Handle: ``sliding-tile`` (a fixed pattern) or ``sparse-videogen`` (outside a sampling loop it classifies
    its heads afresh on every call, so each batch trains under the pattern profiled on it). ``adaspa`` is refused:
    its pattern is searched once per sampling run."""
    from .. import techniques as T
    from ..plan.spec import parse_use
    from .sparse import register
    register()
    name, cfg = parse_use(use)
    if name not in ("sliding-tile", "sparse-videogen"):
        raise ValueError(f"--attention trains under 'sliding-tile' or 'sparse-videogen'; {name!r} picks its pattern "
                         "once per sampling run")
    return T.apply(name, tr.net, {name: cfg})


def init_from(tr: VideoTrainer, path) -> None:
    """Load an exported model's weights into the network and its EMA (a continuation run)."""
    tensors, meta = ckpt.load(path)
    if meta.get("model") != tr.cfg.model and dict(meta.get("model", {})) != {**meta.get("model", {}), **tr.cfg.model}:
        raise ckpt.CheckpointError(f"{path}: a different video DiT config than preset {tr.cfg.name!r}")
    ckpt.load_state(tr.net, tensors, "", where=str(path))
    ckpt.load_state(tr.ema, tensors, "", where=str(path))


if __name__ == "__main__":
    main()
