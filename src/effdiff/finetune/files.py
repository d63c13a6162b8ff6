"""Adapter files: safetensors tensors + a JSON config (no pickle), atomic, SHA-256 checked.

    save_lora(den, "thick", name="thick")        # thick.safetensors (a few hundred KB) + thick.json
    load_lora(den2, "thick", weight=0.8)         # attaches adapter "thick" at weight 0.8

The JSON records the LoRA config, the adapted layer names and a fingerprint of the base weights it
was trained on; loading onto other base weights raises unless ``check_base=False``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from . import lora as L

LORA_FORMAT = "effdiff-lora-1"


def base_state(model) -> dict[str, torch.Tensor]:
    """The base network's state dict as it was before any LoRA (adapter tensors dropped, names restored)."""
    sd = L.module_of(model).state_dict()
    return {k.replace(".base_layer.", "."): v for k, v in sd.items() if ".lora_" not in k}


def base_fingerprint(model) -> str:
    """SHA-256 of the base weights (what an adapter file is tied to)."""
    return ckpt.tensors_sha256(base_state(model))


def lora_tensors(model, name: str) -> dict[str, torch.Tensor]:
    """Adapter ``name``'s A and B matrices, keyed like peft's files (no adapter name in the key)."""
    from peft import get_peft_model_state_dict
    L.adapter_parameters(model, name)                    # KeyError for an unknown adapter
    return get_peft_model_state_dict(L.module_of(model), adapter_name=name)


def save_lora(model, path, name: str = "default", config: L.LoRAConfig | None = None, card: dict | None = None) -> Path:
    """Write adapter ``name`` to ``path.safetensors`` + ``path.json``; returns the stem."""
    net = L.module_of(model)
    lays = [n for n, m in L.layers(net).items() if name in m.lora_A]
    first = L.layers(net)[lays[0]]
    cfg = config or L.LoRAConfig(rank=int(first.r[name]), alpha=float(first.lora_alpha[name]))
    cfg = dataclasses.replace(cfg, targets=lays)
    meta = {"format": LORA_FORMAT, "lora": dataclasses.asdict(cfg), "base_sha256": base_fingerprint(net),
            "base": getattr(model, "meta", {}).get("card", {}).get("preset"), "card": card or {}}
    ckpt.save(path, lora_tensors(net, name), meta)
    return Path(path)


def read_lora(path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a LoRA file, verified."""
    tensors, meta = ckpt.load(path)
    if meta.get("format") != LORA_FORMAT:
        raise ckpt.CheckpointError(f"{path}: not an effdiff LoRA file (format {meta.get('format')!r})")
    return tensors, meta


def load_lora(model, path, name: str | None = None, weight: float = 1.0, check_base: bool = True) -> str:
    """Attach the adapter stored at ``path`` as ``name`` (default: the file's stem) with ``weight``,
    beside any adapters already active; returns its name."""
    from peft import set_peft_model_state_dict
    tensors, meta = read_lora(path)
    net = L.module_of(model)
    if check_base and meta["base_sha256"] != base_fingerprint(net):
        raise ckpt.CheckpointError(f"{path} was trained on other base weights (fingerprint "
                                   f"{meta['base_sha256'][:12]}...); pass check_base=False to load it anyway")
    name = name or Path(path).name
    active = L.weights_of(net)
    L.add_lora(net, L.LoRAConfig(**meta["lora"]), name=name)
    got = set_peft_model_state_dict(net, tensors, adapter_name=name)
    bad = [k for k in getattr(got, "unexpected_keys", []) if ".lora_" in k]
    if bad or set(lora_tensors(net, name)) != set(tensors):
        raise ckpt.CheckpointError(f"{path} does not fit this network: unexpected {bad[:3]}")
    net.requires_grad_(False)
    L.set_weights(net, {**active, name: weight})
    return name
