"""Pruning (survey §3.4.2): Diff-Pruning's Taylor importance over the early timesteps, structured
width pruning on an explicit dependency graph for effdiff's UNet and DiT, a short fine-tune, and
save / load of pruned models; depth pruning (drop residual blocks chosen on the sampling trajectory,
LAPTOP-style) and attention-head pruning. See docs/compression.md."""
from .channels import groups, resize, widths
from .diff_pruning import DiffPruningConfig, PruneStats, apply_diff_pruning, finetune, prepare_diff_pruning
from .importance import taylor_gradients
from .depth import (DepthPruningConfig, DepthStats, apply_depth_pruning, candidates, drop, dropped,
                    prepare_depth_pruning, undrop)
from .heads import HeadPruningConfig, HeadStats, PrunedAttention, apply_head_pruning, prepare_head_pruning
from .io import load_pruned, save_pruned

__all__ = ["groups", "resize", "widths", "DiffPruningConfig", "PruneStats", "apply_diff_pruning", "finetune",
           "prepare_diff_pruning", "taylor_gradients", "load_pruned", "save_pruned",
           "DepthPruningConfig", "DepthStats", "apply_depth_pruning", "candidates", "drop", "dropped",
           "prepare_depth_pruning", "undrop", "HeadPruningConfig", "HeadStats", "PrunedAttention", "apply_head_pruning",
           "prepare_head_pruning"]
