"""Training: the loop (EMA, checkpoints, resume) in ``trainer.py``, named recipes in ``presets.py``."""
from .trainer import TrainConfig, Trainer, train
from .presets import PRESETS, preset

__all__ = ["TrainConfig", "Trainer", "train", "PRESETS", "preset"]
