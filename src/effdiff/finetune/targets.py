"""Which layers an adapter adapts: Linear / Conv2d layers of a module grouped by kind.

    target_names(net, kinds=("attention", "mlp", "conv"))   # module names for peft's target_modules

Kinds: ``attention`` (linear layers inside a module whose class name contains "Attention": ours,
diffusers' ``Attention``), ``mlp`` (the other linear layers), ``conv`` (2-D convolutions). The
noise / class embeddings (``exclude`` prefixes) stay frozen by default. peft builds its LoRA factors
with the base layer's own class, so only plain ``nn.Linear`` / ``nn.Conv2d`` qualify (a subclass with
its own constructor, like the UNet's input ``Conv``, is skipped and listed by ``skipped_names``).
"""
from __future__ import annotations

import re

from torch import nn

KINDS = ("attention", "mlp", "conv")
DEFAULT_EXCLUDE = ("cond_embed", "context_table")


def _kind(name: str, module: nn.Module, parents: dict[str, nn.Module]) -> str | None:
    if isinstance(module, nn.Conv2d):
        return "conv"
    if not isinstance(module, nn.Linear):
        return None
    parent = parents.get(name.rpartition(".")[0])
    parent = parent.get_base_layer() if hasattr(parent, "get_base_layer") else parent
    return "attention" if parent is not None and "Attention" in type(parent).__name__ else "mlp"


def _candidates(net: nn.Module, kinds, exclude) -> list[tuple[str, nn.Module]]:
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown layer kind(s) {unknown}; known: {', '.join(KINDS)}")
    parents = dict(net.named_modules())
    out = []
    for name, m in net.named_modules():
        if any(name == e or name.startswith(e + ".") for e in exclude) or _inside_adapter(name):
            continue
        m = m.get_base_layer() if hasattr(m, "get_base_layer") else m     # already LoRA-wrapped: its base
        if _kind(name, m, parents) in kinds:
            out.append((name, m))
    return out


def _inside_adapter(name: str) -> bool:
    """A module that belongs to an adapter layer (peft's lora_A/B, dropout, the wrapped base_layer)."""
    return any(part.startswith("lora_") or part == "base_layer" for part in name.split("."))


def target_names(net: nn.Module, kinds=KINDS, exclude=DEFAULT_EXCLUDE, pattern: str | None = None) -> list[str]:
    """Names of the plain Linear / Conv2d layers of ``kinds`` (optionally matching regex ``pattern``)."""
    rx = re.compile(pattern) if pattern else None
    names = [n for n, m in _candidates(net, kinds, exclude)
             if type(m) in (nn.Linear, nn.Conv2d) and (rx is None or rx.search(n))]
    if not names:
        raise ValueError(f"no {'/'.join(kinds)} layers to adapt in this {type(net).__name__}"
                         + (f" matching {pattern!r}" if pattern else ""))
    return names


def skipped_names(net: nn.Module, kinds=KINDS, exclude=DEFAULT_EXCLUDE) -> list[str]:
    """Layers of ``kinds`` that are subclasses of Linear / Conv2d and so are not adapted."""
    return [n for n, m in _candidates(net, kinds, exclude) if type(m) not in (nn.Linear, nn.Conv2d)]
