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


def save_figure(fig, path) -> Path:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png"))
    finally:
        plt.close(fig)


# label offsets tried in order (points): beside the point first, then further out with a leader line
_OFFSETS = [(4, 3), (4, -3), (-4, 3), (-4, -3), (0, 9), (0, -9)] + \
    [(dx * k, dy * k) for k in (3, 5, 8) for dx, dy in ((4, 4), (4, -4), (-4, 4), (-4, -4), (6, 0), (-6, 0))]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both coordinates (lower is better)."""
    return [i for i, (x, y) in enumerate(points)
            if not any((u <= x and v <= y) and (u < x or v < y) for u, v in points)]


def place_labels(ax, points: list[tuple[float, float]], labels: list[str], fontsize: float = 7,
                 first: list[int] | None = None) -> list:
    """Annotate points with their labels where a label overlaps no other label, no point and stays
    inside the axes (greedy over ``_OFFSETS``, the indices in ``first`` first); a label with no free
    spot is left out, so labels never overlap. Returns the indices labelled."""
    from matplotlib.text import Text
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    dots = [ax.transData.transform(p) for p in points]
    order = list(dict.fromkeys([*(first or []), *range(len(points))]))
    taken, out = [], []
    for i in order:
        (px, py), text = points[i], labels[i]
        best = None
        for dx, dy in _OFFSETS:
            far = abs(dx) + abs(dy) > 10
            t = ax.annotate(text, (px, py), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                            ha="left" if dx >= 0 else "right", va="bottom" if dy >= 0 else "top",
                            arrowprops=dict(arrowstyle="-", lw=0.4, color="0.55") if far else None)
            t.update_positions(renderer)
            box = Text.get_window_extent(t, renderer).expanded(1.04, 1.08)
            bad = sum(box.overlaps(o) for o in taken)
            bad += sum(box.x0 - 3 < x < box.x1 + 3 and box.y0 - 3 < y < box.y1 + 3 for x, y in dots)
            bad += 0 if (frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1) else 5
            if best is None or bad < best[0]:
                if best is not None:
                    best[1].remove()
                best = (bad, t, box)
            else:
                t.remove()
            if bad == 0:
                break
        if best[0] > 0:
            best[1].remove()
            continue
        taken.append(best[2])
        out.append(i)
    return out


def pareto_plot(rows: list[dict], path, x: str = "ms_per_sample", y: str = "fd", floor: float | None = None,
                title: str = "quality vs cost") -> Path:
    """One panel per model: y against x (log-x); points labelled by their config where a label overlaps
    nothing (``place_labels``: the reference and the Pareto front first; the tables name the rest)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.6), dpi=120, squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (ax, model) in enumerate(zip(axes[0], models)):
        rs = [r for r in rows if r["model"] == model and r.get(x) is not None and r.get(y) is not None]
        ax.scatter([r[x] for r in rs], [r[y] for r in rs], s=22, color=colors[i % len(colors)], zorder=3)
        if floor is not None:
            ax.axhline(floor, color="gray", ls="--", lw=1, label="real vs real")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(x.replace("_", " "))
        ax.set_title(model, fontsize=10)
        ax.grid(alpha=0.3)
        ax.margins(x=0.25, y=0.12)
        if floor is not None:
            ax.legend(fontsize=7, loc="upper right")
    axes[0][0].set_ylabel(y.upper() if len(y) <= 3 else y)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    for ax, model in zip(axes[0], models):
        rs = [r for r in rows if r["model"] == model and r.get(x) is not None and r.get(y) is not None]
        pts = [(r[x], r[y]) for r in rs]
        ref = [i for i, r in enumerate(rs) if r.get("reference")]
        place_labels(ax, pts, [str(r["config"]) for r in rs], first=ref + pareto_front(pts))
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png"))
    finally:
        plt.close(fig)


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
    return save_figure(fig, path)


_save = save_figure    # the old private name
