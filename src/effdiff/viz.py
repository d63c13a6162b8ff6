"""Pictures: sample grids and Pareto plots."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .io import atomic_write


def save_grid(x: torch.Tensor, path, nrow: int = 10, scale: int = 4) -> Path:
    """Save images x [N, C, H, W] in [-1, 1] as one PNG grid (nearest-neighbour upscaled)."""
    from PIL import Image
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    nrows = (n + ncol - 1) // ncol
    grid = torch.full((c, nrows * (h + 1) + 1, ncol * (w + 1) + 1), 64, dtype=torch.uint8)
    for i in range(n):
        r, k = divmod(i, ncol)
        grid[:, 1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + k * (w + 1): 1 + k * (w + 1) + w] = x[i]
    arr = grid.permute(1, 2, 0).numpy()
    arr = np.repeat(np.repeat(arr, scale, 0), scale, 1)
    img = Image.fromarray(arr[..., 0] if c == 1 else arr)
    return atomic_write(path, lambda f: img.save(f, format=image_format(path)))


def image_format(path) -> str:
    """The PIL format for ``path``'s suffix (a clear ``ValueError`` for one PIL cannot write)."""
    from PIL import Image
    Image.init()
    suffix = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"cannot write an image to {str(path)!r}: unknown image suffix {suffix!r} (use .png)")
    return fmt


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png"))
    finally:
        plt.close(fig)


def pareto_plot(rows: list[dict], path, x: str = "ms_per_sample", y: str = "fd", floor: float | None = None,
                title: str = "quality vs cost") -> Path:
    """Scatter of y against x per model with each point labelled by its config, log-x."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for model in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == model]
        ax.scatter([r[x] for r in rs], [r[y] for r in rs], label=model, s=24)
        for r in rs:
            ax.annotate(r["config"], (r[x], r[y]), fontsize=6, xytext=(3, 2), textcoords="offset points")
    if floor is not None:
        ax.axhline(floor, color="gray", ls="--", lw=1, label="real-vs-real floor")
    ax.set_xscale("log")
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.upper() if len(y) <= 3 else y)
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def quality_vs_nfe_plot(rows: list[dict], path, metric: str = "fd") -> Path:
    """Per model, the best ``metric`` reached by each solver at each NFE (log-log)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), dpi=110, squeeze=False)
    for ax, model in zip(axes[0], models):
        rs = [r for r in rows if r["model"] == model and not r.get("reference")]
        ref = next((r for r in rows if r["model"] == model and r.get("reference")), None)
        for solver in dict.fromkeys(r["solver"] for r in rs):
            best: dict[int, float] = {}
            for r in rs:
                if r["solver"] == solver:
                    best[r["nfe"]] = min(best.get(r["nfe"], float("inf")), r[metric])
            xs = sorted(best)
            ax.plot(xs, [best[k] for k in xs], marker="o", ms=3, label=solver)
        if ref is not None:
            ax.axhline(ref[metric], color="k", ls="--", lw=1, label=f"reference ({ref['config']})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("NFE")
        ax.set_ylabel(metric.upper() + " (best schedule)")
        ax.set_title(model)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)
