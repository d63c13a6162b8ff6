"""The video evaluator: a small frame/clip feature network trained on moving digits made from the
canonical MNIST test set (independent of the diffusion model's training and held-out digits), and
the scores built on it.

* ``frame_fd`` — Fréchet distance of per-frame features to held-out frames: image quality and
  where digits sit; blind to the order of frames.
* ``clip_fd`` — Fréchet distance of whole-clip features: a temporal conv over the frame features
  and their frame-to-frame changes (trained to recover the digit and each step's displacement),
  pooled over time, concatenated with the predicted displacement of every step: the FVD analogue
  (Unterthiner et al. 2018); it sees motion, so shuffled or frozen frames move it.
* ``identity`` — mean share of a clip's frames whose predicted digit is the clip's majority digit
  (a digit that morphs into another lowers it); ``label_acc`` — share of frames showing the label.
* ``speed`` / ``accel`` — mean |Δ| and |Δ²| (pixels per frame) of the ink centre of mass, measured
  on pixels with no network: frozen clips have speed ~0; shuffled or jittery clips have large
  accelerations (a bouncing digit's |Δ²| is near 0 except at the walls).

    ev = VideoEvaluator.shipped()
    ev.score(x, labels)          # x [N, 1, 16, 32, 32] in [-1, 1]
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import group_norm
from ..metrics.quality import frechet_from_stats, gaussian_stats
from .data import frames_of, moving_digits

WEIGHTS = Path(__file__).parent / "weights"
NAME = "video-eval"
CLIP = 16          # the clip network reads windows of 16 frames


@dataclass
class VideoEvalConfig:
    width: int = 16
    feature_dim: int = 64
    frames: int = CLIP
    num_classes: int = 10


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), group_norm(cout), nn.SiLU())


class VideoEvalNet(nn.Module):
    """Frames [N, 1, 32, 32] -> features [N, F]; clips [B, 1, T, 32, 32] -> features [B, F]."""

    def __init__(self, config: VideoEvalConfig | None = None):
        super().__init__()
        self.config = c = config or VideoEvalConfig()
        w, Fd = c.width, c.feature_dim
        self.frame = nn.Sequential(_conv(1, w), _conv(w, 2 * w), _conv(2 * w, 4 * w), nn.Flatten(),
                                   nn.Linear(4 * w * 16, Fd), nn.SiLU())
        self.frame_head = nn.Linear(Fd, c.num_classes + 2)             # digit, ink centre
        self.temporal = nn.Sequential(nn.Conv1d(2 * Fd, Fd, 3, padding=1), nn.SiLU(), nn.Conv1d(Fd, Fd, 3, padding=1),
                                      nn.SiLU())
        self.step_head = nn.Linear(Fd, 2)                                    # displacement to the next frame
        self.clip_fc = nn.Sequential(nn.Linear(2 * Fd, Fd), nn.SiLU())
        self.clip_head = nn.Linear(Fd, c.num_classes)                        # digit

    def frame_features(self, f: torch.Tensor) -> torch.Tensor:
        return self.frame(f)

    def temporal_features(self, x: torch.Tensor, ff: torch.Tensor | None = None) -> torch.Tensor:
        """Per-step features [B, F, T] from each frame's features and their change to the next frame."""
        B, T = x.shape[0], x.shape[2]
        ff = (self.frame(frames_of(x)) if ff is None else ff).reshape(B, T, -1).transpose(1, 2)   # [B, F, T]
        change = torch.cat([ff[:, :, 1:] - ff[:, :, :-1], torch.zeros_like(ff[:, :, :1])], 2)
        return self.temporal(torch.cat([ff, change], 1))

    def pooled(self, x: torch.Tensor, ff: torch.Tensor | None = None, h: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, 1, T, 32, 32] (T = config.frames) -> [B, F]: step features pooled over time (mean, max)."""
        h = self.temporal_features(x, ff) if h is None else h
        return self.clip_fc(torch.cat([h.mean(2), h.amax(2)], 1))

    def clip_features(self, x: torch.Tensor, ff: torch.Tensor | None = None) -> torch.Tensor:
        """Clip features [B, F + 2(T-1)]: the pooled features and the predicted displacement of every
        step in pixels (the trajectory: pooling alone is nearly blind to the order of frames)."""
        h = self.temporal_features(x, ff)
        steps = self.step_head(h[:, :, :-1].transpose(1, 2)) * 3                # [B, T-1, 2] pixels
        return torch.cat([self.pooled(x, ff, h), steps.flatten(1)], 1)


def ink_centres(x: torch.Tensor) -> torch.Tensor:
    """Ink centre of mass (row, col) in pixels of every frame: [B, 1, T, H, W] -> [B, T, 2]."""
    ink = ((x[:, 0] + 1) / 2).clamp(0, 1) + 1e-6                       # [B, T, H, W]
    r = torch.arange(x.shape[-2], dtype=ink.dtype)
    c = torch.arange(x.shape[-1], dtype=ink.dtype)
    m = ink.sum((-1, -2))
    return torch.stack([(ink.sum(-1) * r).sum(-1) / m, (ink.sum(-2) * c).sum(-1) / m], -1)


def motion(x: torch.Tensor) -> dict:
    """Mean speed |Δc| and acceleration |Δ²c| (pixels/frame) of the ink centre over clips x."""
    c = ink_centres(x)
    d1 = c.diff(dim=1)
    d2 = d1.diff(dim=1)
    return {"speed": float(d1.norm(dim=-1).mean()), "accel": float(d2.norm(dim=-1).mean())}


def windows(x: torch.Tensor, T: int = CLIP) -> torch.Tensor:
    """Non-overlapping T-frame windows of clips [B, 1, L, H, W] -> [B * (L // T), 1, T, H, W]."""
    B, C, L, H, W = x.shape
    k = L // T
    if k == 0:
        raise ValueError(f"clips need at least {T} frames for clip features, got {L}")
    return x[:, :, :k * T].reshape(B, C, k, T, H, W).transpose(1, 2).reshape(B * k, C, T, H, W)


class VideoEvaluator:
    """Scores of video samples against reference statistics of held-out clips."""

    def __init__(self, net: VideoEvalNet, reference: dict):
        self.net, self.ref = net.eval(), reference

    @classmethod
    def shipped(cls, where: Path = WEIGHTS) -> "VideoEvaluator":
        from safetensors.torch import load_file
        meta = json.loads((where / f"{NAME}.json").read_text())
        net = VideoEvalNet(VideoEvalConfig(**meta["config"]))
        net.load_state_dict(load_file(str(where / f"{NAME}.safetensors")))
        ref = load_file(str(where / f"{NAME}.reference.safetensors"))
        return cls(net, {**ref, **{k: float(v) for k, v in meta["reference_motion"].items()}})

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch: int = 64):
        """(frame features [N*T, F], frame logits [N, T, 10], clip features [N*k, F]) of clips x."""
        ff, logits, cf = [], [], []
        for i in range(0, len(x), batch):
            xb = x[i:i + batch]
            f = self.net.frame_features(frames_of(xb))
            ff.append(f)
            logits.append(self.net.frame_head(f)[:, :10].reshape(len(xb), xb.shape[2], 10))
            cf.append(self.net.clip_features(windows(xb)))
        return torch.cat(ff), torch.cat(logits), torch.cat(cf)

    def score(self, x: torch.Tensor, labels=None, features=None) -> dict:
        """frame_fd, clip_fd, identity, label_acc (when labels given), speed, accel of x [N, 1, T, 32, 32];
        ``features``: x's ``features(x)`` when the caller already has them (they are not computed again)."""
        if x.ndim != 5 or x.shape[1] != 1 or tuple(x.shape[-2:]) != (32, 32) or len(x) < 2 or x.shape[2] < CLIP:
            raise ValueError(f"video samples must be [N >= 2, 1, T >= {CLIP}, 32, 32], got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("video samples contain NaN or inf")
        ff, logits, cf = self.features(x) if features is None else features
        pred = logits.argmax(-1)                                           # [N, T]
        major = pred.mode(1).values
        out = {"n": len(x), "frames": x.shape[2],
               "frame_fd": frechet_from_stats(*gaussian_stats(ff), self.ref["frame_mu"], self.ref["frame_cov"]),
               "clip_fd": frechet_from_stats(*gaussian_stats(cf), self.ref["clip_mu"], self.ref["clip_cov"]),
               "identity": float((pred == major[:, None]).float().mean()), **motion(x)}
        if labels is not None:
            out["label_acc"] = float((pred == torch.as_tensor(labels).reshape(-1, 1)).float().mean())
        return out


# --------------------------------------------------------------------------- training (development time)

def targets(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ink centres scaled to [0, 1] [B, T, 2] and displacements to the next frame in pixels/3 [B, T-1, 2]."""
    c = ink_centres(x)
    return c / 32, c.diff(dim=1) / 3


def train(steps: int = 1000, batch: int = 16, clips: int = 4000, seed: int = 0, log=print) -> tuple[VideoEvalNet, dict]:
    """Train on moving digits of the canonical MNIST test set ("eval" split): frame digit + ink
    centre, clip digit, per-step displacement to the next frame; returns (net, metrics on a fresh eval-split seed)."""
    torch.manual_seed(seed)
    x, y = moving_digits("eval", clips, CLIP, seed=seed)
    net = VideoEvalNet()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        xb, yb = x[idx], y[idx]
        flip = torch.rand(batch, generator=gen) < 0.5
        xb = torch.where(flip[:, None, None, None, None], xb.flip(2), xb)
        centre, disp = targets(xb)
        ff = net.frame_features(frames_of(xb))
        fo = net.frame_head(ff)
        h = net.temporal_features(xb, ff)
        co = net.clip_head(net.pooled(xb, ff, h))
        step_out = net.step_head(h[:, :, :-1].transpose(1, 2))                  # [B, T-1, 2]
        loss = (F.cross_entropy(fo[:, :10], yb.repeat_interleave(CLIP)) + 10 * F.mse_loss(fo[:, 10:], centre.reshape(-1, 2))
                + F.cross_entropy(co, yb) + F.mse_loss(step_out, disp))
        for g in opt.param_groups:
            g["lr"] = 2e-3 * 0.5 * (1 + torch.cos(torch.tensor(step / steps * 3.14159)).item())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            log(f"step {step} loss {loss.item():.4f}")
    net.eval()
    xt, yt = moving_digits("eval", 500, CLIP, seed=seed + 1)
    with torch.no_grad():
        ff = net.frame_features(frames_of(xt))
        fo = net.frame_head(ff)
        h = net.temporal_features(xt, ff)
        co = net.clip_head(net.pooled(xt, ff, h))
        step_out = net.step_head(h[:, :, :-1].transpose(1, 2))
        centre, disp = targets(xt)
    metrics = {"frame_acc": float((fo[:, :10].argmax(1) == yt.repeat_interleave(CLIP)).float().mean()),
               "clip_acc": float((co.argmax(1) == yt).float().mean()),
               "centre_rmse_px": float((fo[:, 10:] - centre.reshape(-1, 2)).pow(2).mean().sqrt() * 32),
               "displacement_rmse_px": float((step_out - disp).pow(2).mean().sqrt() * 3),
               "displacement_sd_px": float(disp.std() * 3),
               "checked_on": "500 fresh eval-split clips (seed + 1)"}
    return net, metrics


REFERENCE = {"split": "test", "n": 1000, "seed": 0}   # held-out digits of data.mnist


def reference(net: VideoEvalNet, split: str = "test", n: int = 1000, seed: int = 0) -> tuple[dict, dict]:
    """Reference statistics of ``n`` held-out clips: Gaussian fits of frame and clip features, motion."""
    ev = VideoEvaluator(net, {})
    x, _ = moving_digits(split, n, CLIP, seed=seed)
    ff, _, cf = ev.features(x)
    fm, fc = gaussian_stats(ff)
    cm, cc = gaussian_stats(cf)
    return {"frame_mu": fm, "frame_cov": fc, "clip_mu": cm, "clip_cov": cc}, motion(x)


def main(argv=None) -> None:
    """Train and write weights/video-eval.{safetensors,json,md} and the reference statistics."""
    import argparse
    import time
    from safetensors.torch import save_file
    ap = argparse.ArgumentParser(description="train the video evaluator (needs the MNIST test set)")
    ap.add_argument("--out", default=str(WEIGHTS))
    ap.add_argument("--steps", type=int, default=1000)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    net, metrics = train(a.steps)
    ref, mot = reference(net, **REFERENCE)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / f"{NAME}.safetensors"))
    save_file({k: v.contiguous() for k, v in ref.items()}, str(out / f"{NAME}.reference.safetensors"))
    meta = {"config": asdict(net.config), "metrics": metrics, "reference": REFERENCE, "reference_motion": mot,
            "trained_on": "moving_digits('eval', 4000, 16, seed=0): digits of the canonical 10k MNIST test set",
            "steps": a.steps, "wall_time_s": round(time.time() - t0, 1),
            "command": "python -m effdiff.video.evaluator --steps %d" % a.steps}
    (out / f"{NAME}.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
