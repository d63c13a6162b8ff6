"""Adapter files: safetensors tensors + a JSON config (no pickle), atomic, SHA-256 checked.

    save_lora(den, "thick", name="thick")        # thick.safetensors (a few hundred KB) + thick.json
    load_lora(den2, "thick", weight=0.8)         # attaches adapter "thick" at weight 0.8

The JSON records the LoRA config, the adapted layer names and a fingerprint of the base weights it
was trained on; loading onto other base weights raises unless ``check_base=False``.
"""
from __future__ import annotations

import dataclasses
import re
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
    """(tensors, metadata) of a LoRA file, verified: its format, its LoRA config and base fingerprint."""
    tensors, meta = ckpt.load(path)
    if meta.get("format") != LORA_FORMAT:
        raise ckpt.CheckpointError(f"{path}: not an effdiff LoRA file (format {meta.get('format')!r})")
    if not isinstance(meta.get("base_sha256"), str):
        raise ckpt.CheckpointError(f"{path}: malformed LoRA file (no base_sha256 fingerprint)")
    lora_config(meta, path)
    return tensors, meta


def lora_config(meta: dict, path) -> L.LoRAConfig:
    """The ``LoRAConfig`` a LoRA file declares (a ``CheckpointError`` naming the file if it is malformed)."""
    try:
        if not isinstance(meta.get("lora"), dict):
            raise TypeError("no 'lora' object")
        return L.LoRAConfig(**meta["lora"])
    except (TypeError, ValueError) as e:
        raise ckpt.CheckpointError(f"{path}: malformed LoRA config: {e}") from None


def adapter_name(path) -> str:
    """The adapter name a LoRA file gets by default: its stem, with what peft cannot take as a module
    key (dots, spaces, ...) replaced by ``_`` (``thick.v2.safetensors`` -> ``thick_v2``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", ckpt.stem(path).name) or "lora"


def check_fit(net, name: str, tensors: dict[str, torch.Tensor], path) -> None:
    """The file's tensors are exactly adapter ``name``'s as attached (keys, shapes), all finite."""
    own = {k: tuple(v.shape) for k, v in lora_tensors(net, name).items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    missing, extra = sorted(set(own) - set(got)), sorted(set(got) - set(own))
    bad = [f"{k}: {got[k]} vs {own[k]}" for k in sorted(set(own) & set(got)) if got[k] != own[k]]
    if missing or extra or bad:
        raise ckpt.CheckpointError(f"{path} does not fit this network or its declared rank: missing {missing[:3]}, "
                                   f"unexpected {extra[:3]}, shape mismatch {bad[:3]}")
    nonfinite = sorted(k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if nonfinite:
        raise ckpt.CheckpointError(f"{path} holds NaN/inf in {nonfinite[:3]}")


def _detach(net, name: str, before: list[str]) -> None:
    """Take adapter ``name`` out again (all LoRA layers out when none was attached ``before``)."""
    if not before:
        L.remove_lora(net)
        return
    for m in L.layers(net).values():
        if name in m.lora_A:
            m.delete_adapter(name)
    getattr(net, "peft_config", {}).pop(name, None)


def load_lora(model, path, name: str | None = None, weight: float = 1.0, check_base: bool = True) -> str:
    """Attach the adapter stored at ``path`` as ``name`` (default: the file's stem) with ``weight``,
    beside any adapters already active; returns its name. A file that does not fit leaves the model as
    it was."""
    from peft import set_peft_model_state_dict
    tensors, meta = read_lora(path)
    net = L.module_of(model)
    if check_base and meta["base_sha256"] != base_fingerprint(net):
        raise ckpt.CheckpointError(f"{path} was trained on other base weights (fingerprint "
                                   f"{meta['base_sha256'][:12]}...); pass check_base=False to load it anyway")
    name = name or adapter_name(path)
    before, active = L.adapter_names(net), L.weights_of(net)
    try:
        L.add_lora(net, lora_config(meta, path), name=name)
    except ValueError as e:
        if name in before:
            raise
        raise ckpt.CheckpointError(f"{path} does not fit this network: {e}") from None
    try:
        check_fit(net, name, tensors, path)
        set_peft_model_state_dict(net, tensors, adapter_name=name)
    except BaseException:
        _detach(net, name, before)
        if active:
            L.set_weights(net, active)
        raise
    net.requires_grad_(False)
    L.set_weights(net, {**active, name: weight})
    return name
