"""Pictures of clips: a frame strip (PNG) and an animated GIF (Pillow)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Clips [N, 1, T, H, W] in [-1, 1] -> uint8 [N, T, H, W]."""
    return ((x[:, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def strip(x: torch.Tensor, gap: int = 2) -> np.ndarray:
    """One row per clip, its frames left to right, ``gap`` grey pixels between rows: uint8 [rows, cols]."""
    v = to_uint8(x)
    N, T, H, W = v.shape
    out = np.full((N * (H + gap) - gap, T * W), 128, np.uint8)
    for i in range(N):
        out[i * (H + gap):i * (H + gap) + H] = np.concatenate(list(v[i]), 1)
    return out


def save_strip(x: torch.Tensor, path, scale: int = 2) -> Path:
    """Clips [N, 1, T, H, W] as one PNG, a row per clip (written atomically)."""
    from PIL import Image
    from ..io import atomic_write
    img = Image.fromarray(strip(x))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return atomic_write(path, lambda f: img.save(f, format="PNG"))


def save_gif(x: torch.Tensor, path, per_row: int = 8, ms: int = 120, scale: int = 2) -> Path:
    """Clips [N, 1, T, H, W] tiled ``per_row`` to a row, played together as one looping GIF."""
    from PIL import Image
    v = to_uint8(x)
    N, T, H, W = v.shape
    rows = -(-N // per_row)
    frames = []
    for t in range(T):
        canvas = np.full((rows * (H + 2), per_row * (W + 2)), 128, np.uint8)
        for i in range(N):
            r, c = divmod(i, per_row)
            canvas[r * (H + 2):r * (H + 2) + H, c * (W + 2):c * (W + 2) + W] = v[i, t]
        img = Image.fromarray(canvas)
        frames.append(img.resize((img.width * scale, img.height * scale), Image.NEAREST))
    from ..io import atomic_write
    return atomic_write(path, lambda f: frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:],
                                                        duration=ms, loop=0))
