"""What a fine-tune trains, as a registry the trainer and the bench enumerate: full fine-tuning,
LoRA, and the control modules. A method builds the network to train from a base denoiser (its
trainable parameters flagged), writes the trained part to a file, and reads it back.

    m = METHODS["lora"]
    net = m.build(den, {"rank": 4})        # den.net with a fresh adapter, everything else frozen
    m.save(net, "run/model", meta)         # only the adapter: a few hundred KB
    den2 = m.load(zoo.load(base), "run/model")   # a denoiser with the adapter attached
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from torch import nn

from .. import checkpoint as ckpt
from . import files
from .control import Controlled, control_kind, make_control

CONTROL_FORMAT, FULL_FORMAT = "effdiff-control-1", "effdiff-model-1"


@dataclass(frozen=True)
class Method:
    name: str
    build: Callable[[nn.Module, dict], nn.Module]      # (base denoiser, method_args) -> network to train
    save: Callable[[nn.Module, object, dict], None]    # (trained network, path stem, card) -> files
    load: Callable[[nn.Module, object], object]        # (base denoiser, path stem) -> denoiser or Controlled
    conditioned: bool = False                          # trained on a condition map (needs a hint)
    paper: str = ""


# ---- full fine-tuning -----------------------------------------------------------------------

def _full_build(den, args: dict) -> nn.Module:
    if args:
        raise TypeError(f"full fine-tuning takes no options, got {sorted(args)}")
    return den.net.requires_grad_(True)


def _full_save(net, path, card: dict) -> None:
    meta = {"format": FULL_FORMAT, "arch": type(net).__name__.lower(), "model": dataclasses.asdict(net.config),
            "task": "diffusion", "card": card}
    ckpt.save(path, net.state_dict(), meta)


def _full_load(den, path):
    tensors, meta = ckpt.load(path)
    ckpt.load_state(den.net, tensors, where=str(path))
    return den


# ---- LoRA -----------------------------------------------------------------------------------

def _lora_build(den, args: dict) -> nn.Module:
    from .lora import LoRAConfig, add_lora
    add_lora(den, LoRAConfig(**args), name="default")
    return den.net


def _lora_save(net, path, card: dict) -> None:
    files.save_lora(net, path, "default", card=card)


def _lora_load(den, path):
    files.load_lora(den, path, name="default")
    return den


# ---- control modules ------------------------------------------------------------------------

def _control_build(kind: str):
    def build(den, args: dict) -> nn.Module:
        den.net.requires_grad_(False)
        return Controlled(den.net, make_control(kind, den.net, **args).requires_grad_(True))
    return build


def _control_save(net: Controlled, path, card: dict) -> None:
    c = net.control
    meta = {"format": CONTROL_FORMAT, "kind": control_kind(c), "config": dataclasses.asdict(c.config),
            "base_sha256": files.base_fingerprint(net.base), "card": card}
    ckpt.save(path, c.state_dict(), meta)


def load_control(den, path, check_base: bool = True) -> Controlled:
    """The base denoiser's network driven by the control module stored at ``path``."""
    tensors, meta = ckpt.load(path)
    if meta.get("format") != CONTROL_FORMAT:
        raise ckpt.CheckpointError(f"{path}: not an effdiff control file (format {meta.get('format')!r})")
    if check_base and meta.get("base_sha256") != files.base_fingerprint(den.net):
        raise ckpt.CheckpointError(f"{path} was trained on other base weights; pass check_base=False to load it anyway")
    if not isinstance(meta.get("config"), dict):
        raise ckpt.CheckpointError(f"{path}: malformed control file (its 'config' is not a JSON object)")
    try:                                         # the file's kind and config build the module: its errors are the file's
        control = make_control(meta.get("kind"), den.net, **meta["config"])
    except (KeyError, TypeError, ValueError, IndexError, OverflowError, ZeroDivisionError, RuntimeError) as e:
        why = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise ckpt.CheckpointError(f"{path}: its control kind/config do not build a control module for this "
                                   f"network ({type(e).__name__}: {why})") from None
    ckpt.load_state(control, tensors, where=str(path))
    return Controlled(den.net, control.eval().requires_grad_(False))


METHODS: dict[str, Method] = {
    "full": Method("full", _full_build, _full_save, _full_load, paper="full fine-tuning (baseline)"),
    "lora": Method("lora", _lora_build, _lora_save, _lora_load, paper="Hu et al. 2022"),
    "controlnet": Method("controlnet", _control_build("controlnet"), _control_save, load_control, True,
                         "Zhang et al. 2023; on a DiT PixArt-δ, Chen et al. 2024"),
    "controlnet-xs": Method("controlnet-xs", _control_build("controlnet-xs"), _control_save, load_control, True,
                            "Zavadski et al. 2024"),
    "t2i-adapter": Method("t2i-adapter", _control_build("t2i-adapter"), _control_save, load_control, True,
                          "Mou et al. 2024"),
}


def method(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"unknown fine-tuning method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]
