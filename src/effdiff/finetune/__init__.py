"""Efficient fine-tuning (survey section 4): LoRA through peft with exact merge and LoRA arithmetic,
full fine-tuning as the baseline, and control modules — ControlNet (UNet and DiT), ControlNet-XS, T2I-Adapter —
trained on condition maps computed from the embedded data. See docs/finetuning.md.
"""
from .conditions import CONDITIONS, adherence, condition
from .control import CONTROLS, DIT_CONTROLS, Controlled, controlled_denoiser, make_control
from .controlnet_dit import ControlNetDiT, ControlNetDiTConfig
from .domains import DOMAINS, domain
from .files import load_lora, save_lora
from .lora import LoRAConfig, add_lora, adapter_names, merge, remove_lora, set_weights, trainable_parameters
from .methods import METHODS, load_control, method
from .presets import PRESETS, preset
from .trainer import FinetuneConfig, FinetuneTrainer, finetune, load

__all__ = ["LoRAConfig", "add_lora", "adapter_names", "set_weights", "merge", "remove_lora", "trainable_parameters",
           "save_lora", "load_lora", "CONTROLS", "DIT_CONTROLS", "ControlNetDiT", "ControlNetDiTConfig", "Controlled", "controlled_denoiser", "make_control", "load_control",
           "CONDITIONS", "condition", "adherence", "DOMAINS", "domain", "METHODS", "method", "FinetuneConfig",
           "FinetuneTrainer", "finetune", "load", "PRESETS", "preset"]
