"""Save and load a pruned model without the original: the architecture config plus the pruning plan
in the JSON, the pruned tensors in safetensors (atomic writes, SHA-256 checked).

The plan: ``widths`` (block -> private width, Diff-Pruning), ``dropped`` (blocks removed by depth
pruning) and ``heads`` (attention layer -> heads kept); a plan without the last two (older files)
loads as before. A fresh network is built from the config, then blocks are dropped, heads and
widths shrunk, and the tensors loaded over it."""
from __future__ import annotations

import dataclasses

from .. import checkpoint as ckpt
from ..kinds import denoiser
from ..models import build
from ..sites import network
from .channels import resize, widths
from .depth import drop, dropped
from .heads import heads, resize_heads


def save_pruned(denoiser, path, card: dict | None = None) -> None:
    """Write ``path.safetensors`` + ``path.json`` for a pruned zoo-style denoiser."""
    net = network(denoiser)
    meta = {**{k: v for k, v in denoiser.meta.items() if k != "sha256"}, "format": "effdiff-model-1",
            "model": dataclasses.asdict(net.config),
            "pruning": {"widths": widths(net), "dropped": dropped(net), "heads": heads(net)}}
    meta["card"] = {**meta.get("card", {}), **(card or {})}
    ckpt.save(path, net.state_dict(), meta)


def build_net(meta: dict, path):
    """The fresh network a checkpoint's ``arch`` and ``model`` config describe; a config that cannot
    build one is a ``CheckpointError`` naming the file."""
    arch, cfg = meta.get("arch"), meta.get("model")
    if not isinstance(arch, str) or not isinstance(cfg, dict):
        raise ckpt.CheckpointError(f"{path}: 'arch' must name an architecture and 'model' be a JSON object")
    try:
        return build(arch, cfg)
    except (KeyError, ValueError) as e:
        raise ckpt.CheckpointError(f"{path}: its {arch} config cannot be built: {e}") from None
    except (TypeError, IndexError, ZeroDivisionError, OverflowError, RuntimeError) as e:
        raise ckpt.CheckpointError(f"{path}: its {arch} config cannot be built: a field has a wrong type or "
                                   f"value ({type(e).__name__})") from None


def apply_plan(net, plan, path) -> None:
    """Shrink a fresh ``net`` by a stored pruning plan; a plan that does not fit the architecture (unknown
    blocks, widths or heads out of range, wrong types) is a ``CheckpointError`` naming the file, whether
    or not hashes vouch for it."""
    try:
        if not isinstance(plan, dict) or not isinstance(plan.get("widths"), dict):
            raise TypeError("'widths' must map blocks to widths")
        spec = {"dropped": (plan.get("dropped", []), list), "heads": (plan.get("heads", {}), dict)}
        for key, (value, kind) in spec.items():
            if not isinstance(value, kind):
                raise TypeError(f"{key!r} must be a JSON {'array' if kind is list else 'object'}")
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in plan["widths"].values()):
            raise ValueError(f"widths must be positive integers, got {plan['widths']}")
        drop(net, spec["dropped"][0])
        resize_heads(net, spec["heads"][0])
        resize(net, plan["widths"])
    except (KeyError, IndexError, AttributeError, TypeError, ValueError, RuntimeError, OverflowError) as e:
        why = e if isinstance(e, (KeyError, ValueError)) and "NoneType" not in str(e) else "an entry of the wrong type or out of range"
        raise ckpt.CheckpointError(f"{path}: its pruning plan does not fit the {type(net).__name__} in its "
                                   f"config ({type(e).__name__}: {why})") from None


def load_pruned(path):
    """The pruned denoiser saved by ``save_pruned`` (built from its config, resized, weights loaded)."""
    tensors, meta = ckpt.load(path)
    if "pruning" not in meta:
        raise ckpt.CheckpointError(f"{path}: no pruning plan in its metadata; load it with effdiff.zoo")
    net = build_net(meta, path)
    apply_plan(net, meta["pruning"], path)
    ckpt.load_state(net, tensors, where=str(path))
    net.eval().requires_grad_(False)
    den = denoiser(net, meta, str(path))                  # a bad process/prediction: CheckpointError
    den.meta = meta
    return den.eval()
