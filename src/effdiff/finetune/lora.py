"""LoRA (Hu et al. 2022, "LoRA: Low-Rank Adaptation of Large Language Models") through ``peft`` on
any module: our UNet and DiT (attention, MLP and conv layers), a diffusers model or a user's network.

    names = add_lora(den, LoRAConfig(rank=4), name="thick")   # den: a Denoiser or a bare nn.Module
    set_weights(den, {"thick": 1.0, "inverted": 0.5})         # LoRA arithmetic: W + sum_i w_i B_i A_i
    with merge(den):                                          # fold into the weights (no overhead) ...
        x = ed.sample(den, ...)
    # ... and back: the base weights are restored bit for bit

The layers are peft's (``inject_adapter_in_model``), so the module keeps its class and ``forward``;
several adapters live side by side and ``set_weights`` scales each one's ΔW = (α/r) B A.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from ..sites import replace
from .targets import DEFAULT_EXCLUDE, KINDS, target_names


def _peft():
    try:
        import peft
        from peft.tuners.lora import LoraLayer
    except ImportError:
        raise ImportError("LoRA needs peft: pip install 'effdiff[finetune]' (or pip install peft)") from None
    return peft, LoraLayer


@dataclass
class LoRAConfig:
    """rank r, α (default r: scale 1), which layers (kinds, a regex ``pattern``, ``exclude`` prefixes)
    or an explicit list of module names (``targets``), dropout on the adapter's input."""
    rank: int = 4
    alpha: float | None = None
    kinds: tuple[str, ...] = KINDS
    pattern: str | None = None
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    targets: list[str] | None = None
    dropout: float = 0.0
    extra: dict = field(default_factory=dict)      # other peft LoraConfig fields (e.g. use_rslora)

    def __post_init__(self):
        self.kinds, self.exclude = tuple(self.kinds), tuple(self.exclude)
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"LoRA rank must be a positive integer, got {self.rank!r}")
        if self.alpha is not None and not self.alpha > 0:
            raise ValueError(f"LoRA alpha must be positive, got {self.alpha!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA dropout must lie in [0, 1), got {self.dropout!r}")


def module_of(model) -> nn.Module:
    """The network inside an effdiff denoiser (``.net``), or ``model`` itself."""
    net = getattr(model, "net", model)
    if not isinstance(net, nn.Module):
        raise TypeError(f"expected a denoiser with .net or an nn.Module, got {type(model).__name__}")
    return net


def layers(model) -> dict[str, nn.Module]:
    """name -> peft LoRA layer of ``model``."""
    _, LoraLayer = _peft()
    return {n: m for n, m in module_of(model).named_modules() if isinstance(m, LoraLayer)}


def adapter_names(model) -> list[str]:
    """The LoRA adapters attached to ``model``, in the order they were added."""
    out: dict[str, None] = {}
    for m in layers(model).values():
        out.update(dict.fromkeys(m.lora_A.keys()))
    return list(out)


def add_lora(model, config: LoRAConfig | None = None, name: str = "default", **fields) -> list[str]:
    """Attach a fresh adapter ``name`` (B = 0: the model is unchanged), freeze everything else and make
    it the one active adapter. Returns the adapted module names."""
    peft, _ = _peft()
    c = config if config is not None else LoRAConfig(**fields)
    net = module_of(model)
    if name in adapter_names(net):
        raise ValueError(f"an adapter named {name!r} is already attached; known: {adapter_names(net)}")
    names = list(c.targets) if c.targets else target_names(net, c.kinds, c.exclude, c.pattern)
    missing = sorted(set(names) - set(dict(net.named_modules())))
    if missing:
        raise ValueError(f"LoRA targets not in this {type(net).__name__}: {missing[:5]}")
    pc = peft.LoraConfig(r=c.rank, lora_alpha=c.alpha or c.rank, lora_dropout=c.dropout, target_modules=names,
                         **c.extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "already found a peft_config": several adapters, on purpose
        peft.inject_adapter_in_model(pc, net, adapter_name=name)
    net.requires_grad_(False)
    set_weights(net, {name: 1.0})
    for p in adapter_parameters(net, name):
        p.requires_grad_(True)
    return names


def adapter_parameters(model, name: str) -> list[nn.Parameter]:
    """The parameters of adapter ``name`` (A and B of every layer)."""
    if name not in adapter_names(model):
        raise KeyError(f"no LoRA adapter named {name!r}; attached: {adapter_names(model)}")
    return [p for n, p in module_of(model).named_parameters() if ".lora_" in n and f".{name}." in n + "."]


def set_weights(model, weights: dict[str, float]) -> None:
    """Activate exactly the adapters in ``weights``, each scaled: W + Σ_i w_i (α_i/r_i) B_i A_i."""
    known = adapter_names(model)
    unknown = sorted(set(weights) - set(known))
    if unknown:
        raise KeyError(f"no LoRA adapter(s) {unknown}; attached: {known}")
    for m in layers(model).values():
        if m.merged:
            raise RuntimeError("unmerge the adapters before changing their weights")
        present = [n for n in weights if n in m.lora_A]
        for n in present:
            m.set_scale(n, float(weights[n]))
        m.set_adapter(present, inference_mode=True)


def weights_of(model) -> dict[str, float]:
    """The active adapters and their weights (scale / (α/r))."""
    out = {}
    for m in layers(model).values():
        for n in m.active_adapters:
            out[n] = m.scaling[n] * m.r[n] / m.lora_alpha[n]
    return out


class Merged:
    """Adapters folded into the base weights; ``unmerge()`` (or leaving the ``with``) puts the exact
    base weights back: peft's subtractive unmerge, then the snapshot taken before merging, so no
    rounding drift survives (diffusers #5170, #5604)."""

    def __init__(self, model, weights: dict[str, float] | None = None, safe: bool = True):
        self.layers = layers(model)
        if not self.layers:
            raise ValueError("nothing to merge: the model has no LoRA layers")
        if weights is not None:
            set_weights(model, weights)
        self.snapshot = {n: m.get_base_layer().weight.detach().clone() for n, m in self.layers.items()}
        for m in self.layers.values():
            m.merge(safe_merge=safe, adapter_names=list(m.active_adapters))

    def unmerge(self, exact: bool = True) -> None:
        with torch.no_grad():
            for n, m in self.layers.items():
                m.unmerge()
                if exact:
                    m.get_base_layer().weight.copy_(self.snapshot[n])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.unmerge()


def merge(model, weights: dict[str, float] | None = None, safe: bool = True) -> Merged:
    """Fold the active adapters (or ``weights``) into the base weights; returns the ``Merged`` handle."""
    return Merged(model, weights, safe)


def remove_lora(model) -> nn.Module:
    """Take every LoRA layer out (the base layers go back in place, unmerged); returns the network."""
    net = module_of(model)
    for name, m in sorted(layers(net).items(), key=lambda kv: -kv[0].count(".")):
        if m.merged:
            raise RuntimeError(f"{name} is merged: unmerge before removing the adapters")
        replace(net, name, m.get_base_layer())
    if hasattr(net, "peft_config"):
        del net.peft_config
    return net


def trainable_parameters(model) -> int:
    """Number of parameters with ``requires_grad``."""
    return sum(p.numel() for p in module_of(model).parameters() if p.requires_grad)
