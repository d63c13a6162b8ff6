"""The video training recipes: the ``task="video"`` entries of ``effdiff.training.presets.PRESETS``
(``effdiff train --preset video-dit`` or ``python -m effdiff.video.train --preset video-dit``)."""
from __future__ import annotations

from dataclasses import replace

from ..training.presets import PRESETS as _ALL
from ..training.trainer import TrainConfig

PRESETS: dict[str, TrainConfig] = {k: v for k, v in _ALL.items() if v.task == "video"}


def preset(name: str, **overrides) -> TrainConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown video preset {name!r}; known: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)
