"""Pruning (survey §3.4.2): Diff-Pruning's Taylor importance over the early timesteps, structured
width pruning on an explicit dependency graph for effdiff's UNet and DiT, a short fine-tune, and
save / load of pruned models. See docs/compression.md."""
from .channels import groups, resize, widths
from .diff_pruning import DiffPruningConfig, PruneStats, apply_diff_pruning, finetune, prepare_diff_pruning
from .importance import taylor_gradients
from .io import load_pruned, save_pruned

__all__ = ["groups", "resize", "widths", "DiffPruningConfig", "PruneStats", "apply_diff_pruning", "finetune",
           "prepare_diff_pruning", "taylor_gradients", "load_pruned", "save_pruned"]
