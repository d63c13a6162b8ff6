"""The training tricks by name, as ``TrainConfig`` overrides of a base preset (one source for the
ablation harness, the docs and the tests):

    from effdiff.training import preset, tricks
    cfg = preset("digits-dit", **tricks.overrides("min-snr", preset("digits-dit")))

``loss`` overrides are merged into the base's loss dict (a preset's time density is kept).
Sliced score matching trains a score-prediction model; compare it with ``"score-dsm"`` (the same
model trained by denoising score matching), not with an eps/velocity baseline.
"""
from __future__ import annotations

from .trainer import TrainConfig

TRICKS: dict[str, dict] = {
    "min-snr": {"loss": {"weighting": "min-snr", "gamma": 5.0}},          # Hang et al. 2023
    "ot": {"coupling": "ot"},                                             # Tong et al. 2023
    "immiscible": {"coupling": "immiscible"},                             # Li et al. 2024
    "ema-power": {"ema": {"kind": "power", "sigma_rel": 0.05}},           # Karras et al. 2024
    "priorgrad": {"prior": "priorgrad"},                                  # Lee et al. 2022
    "repa": {"repa": {"encoder": "digits-classifier", "weight": 0.5, "layer": 2}},   # Yu et al. 2024
    "score-dsm": {"prediction": "score"},                                 # the baseline of "ssm"
    "ssm": {"prediction": "score", "loss": {"kind": "ssm", "n_projections": 1}},     # Song et al. 2019
}


def overrides(name: str, base: TrainConfig) -> dict:
    """``TrainConfig`` field overrides that turn ``base`` into ``base`` + trick ``name``."""
    if name not in TRICKS:
        raise KeyError(f"unknown training trick {name!r}; known: {', '.join(TRICKS)}")
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TRICKS[name].items()}
    if "loss" in out:
        out["loss"] = {**base.loss, **out["loss"]}
    return out
