"""The video study (``effdiff bench --study video``): ``effdiff.bench.video``'s rows."""
from __future__ import annotations

from . import register


@register("video")
def main(argv=None) -> None:
    """Block-Diffusion streaming vs full-sequence video generation, sparse attention, quality CIs (docs/video.md)."""
    from ..video import main as video_main
    video_main(argv)
