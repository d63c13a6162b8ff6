"""Moving digits (Srivastava et al. 2015, "Unsupervised Learning of Video Representations using
LSTMs", Moving MNIST), generated procedurally from the MNIST digits effdiff already embeds.

    x, y = moving_digits("train", n=64, frames=16, seed=0)   # x [64, 1, 16, 32, 32] in [-1, 1], y [64]

Video tensors are ``[B, C, T, H, W]`` everywhere in ``effdiff.video`` (PyTorch's Conv3d order).
Each clip is one digit (its ink bounding box, at most 28x28, native resolution) bouncing inside a
``size`` x ``size`` canvas: a uniform start position, a speed uniform in ``speed`` pixels per frame
and a uniform direction; it reflects off the walls; positions are rounded to whole pixels.
Digits come from ``data.mnist("train")`` for the ``train`` split, ``data.mnist("test")`` (held
out) for ``test``, and the canonical 10k MNIST test set (development only) for ``eval`` — the
split the video evaluator is trained on, independent of both. Same seed, same clips.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

SPLITS = ("train", "test", "eval")
INK = -0.9   # a pixel belongs to the digit's box above this value


@dataclass(frozen=True)
class MovingDigits:
    """One setting: ``frames`` frames of ``size`` x ``size``; speed range in pixels per frame."""
    frames: int = 16
    size: int = 32
    speed: tuple[float, float] = (1.0, 3.0)

    def __post_init__(self):
        if self.frames < 1 or self.size < 28:
            raise ValueError(f"moving digits need frames >= 1 and size >= 28, got {self.frames}, {self.size}")
        if not 0 <= self.speed[0] <= self.speed[1]:
            raise ValueError(f"speed must be (lo, hi) with 0 <= lo <= hi, got {self.speed}")


SETTINGS = {"short": MovingDigits(16), "long": MovingDigits(128)}


def digit_source(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits of a split: (images [N, 1, 28, 28] in [-1, 1], labels [N])."""
    from .. import data
    if split not in SPLITS:
        raise ValueError(f"unknown moving-digits split {split!r}; expected one of {SPLITS}")
    return data.mnist_test() if split == "eval" else data.mnist(split)


def sprite(img: torch.Tensor) -> torch.Tensor:
    """A digit [28, 28] cropped to its ink bounding box [h, w]."""
    rows = (img > INK).any(1).nonzero().flatten()
    cols = (img > INK).any(0).nonzero().flatten()
    if len(rows) == 0:
        return img[:1, :1]
    return img[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def bounce(start: float, velocity: float, span: int, frames: int) -> np.ndarray:
    """Integer positions in [0, span] of a point moving at ``velocity`` and reflecting off 0 and span."""
    if span == 0:
        return np.zeros(frames, dtype=np.int64)
    p = start + velocity * np.arange(frames)
    p = np.mod(p, 2 * span)
    p = np.where(p > span, 2 * span - p, p)          # fold the unrolled path back (elastic walls)
    return np.rint(p).astype(np.int64)


def trajectory(rng: np.random.Generator, h: int, w: int, setting: MovingDigits) -> tuple[np.ndarray, np.ndarray]:
    """Top-left (rows, cols) [T] each of an h x w sprite bouncing in the canvas."""
    sy, sx = setting.size - h, setting.size - w
    y0, x0 = rng.uniform(0, sy), rng.uniform(0, sx)
    speed, angle = rng.uniform(*setting.speed), rng.uniform(0, 2 * math.pi)
    return bounce(y0, speed * math.sin(angle), sy, setting.frames), bounce(x0, speed * math.cos(angle), sx, setting.frames)


def render(spr: torch.Tensor, rows: np.ndarray, cols: np.ndarray, size: int) -> torch.Tensor:
    """The clip [1, T, size, size]: background -1, the sprite pasted at each frame's position."""
    h, w = spr.shape
    video = torch.full((len(rows), size, size), -1.0)
    for t, (r, c) in enumerate(zip(rows, cols)):
        video[t, r:r + h, c:c + w] = spr
    return video.unsqueeze(0)


def moving_digits(split: str = "train", n: int = 64, frames: int = 16, size: int = 32, seed: int = 0,
                  speed: tuple[float, float] = (1.0, 3.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` clips (x [n, 1, frames, size, size] float32 in [-1, 1], digit labels y [n]); digits drawn
    uniformly from ``split`` and trajectories from ``seed`` (deterministic)."""
    setting = MovingDigits(frames, size, tuple(speed))
    images, labels = digit_source(split)
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    pick = rng.integers(0, len(images), size=n)
    clips = []
    for i in pick:
        spr = sprite(images[i, 0])
        rows, cols = trajectory(rng, *spr.shape, setting)
        clips.append(render(spr, rows, cols, size))
    x = torch.stack(clips) if clips else torch.empty(0, 1, frames, size, size)
    return x.contiguous(), labels[torch.from_numpy(pick)].clone()


def frames_of(x: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> [B*T, C, H, W] (frame-major per clip)."""
    B, C, T, H, W = x.shape
    return x.transpose(1, 2).reshape(B * T, C, H, W)


def clips_of(f: torch.Tensor, frames: int) -> torch.Tensor:
    """[B*T, C, H, W] -> [B, C, T, H, W] (inverse of ``frames_of``)."""
    N, C, H, W = f.shape
    return f.reshape(N // frames, frames, C, H, W).transpose(1, 2).contiguous()
