"""Ship a trained adapter or control module into the zoo folder (``zoo/weights/<base>-lora-*`` /
``<base>-controlnet-*``) with a card; ``load(base, zoo.WEIGHTS / name)`` reads it back.

The JSON keeps the file's own format and adds ``arch`` and ``task`` ("lora" / "control"), so
zoo listings show it; ``zoo.load`` refuses it (it is not a full model) with a clear error.
"""
from __future__ import annotations

from pathlib import Path

from .. import checkpoint as ckpt
from ..io import atomic_write
from ..zoo import card_markdown
from .. import assets

TASKS = {"effdiff-lora-1": "lora", "effdiff-control-1": "control"}


def install(path, name: str, base_arch: str, metrics: dict) -> Path:
    """Copy the exported ``path`` (stem) into the zoo as ``name`` with ``metrics`` on its card."""
    tensors, meta = ckpt.load(path)
    if meta.get("format") not in TASKS:
        raise ValueError(f"{path}: not an adapter or control file (format {meta.get('format')!r})")
    prefix = name.split("-lora-")[0].split("-controlnet")[0].split("-t2i-")[0]
    if not (assets.WEIGHTS / f"{prefix}.json").exists():
        raise ValueError(f"{name!r} must start with a zoo backbone name (got prefix {prefix!r})")
    meta = {**meta, "arch": base_arch, "task": TASKS[meta["format"]]}
    meta["card"] = {**meta["card"], "metrics": {**meta["card"].get("metrics", {}), **metrics}}
    ckpt.save(assets.WEIGHTS / name, tensors, meta)           # header and JSON carry the same metadata
    size = (assets.WEIGHTS / f"{name}.safetensors").stat().st_size
    atomic_write(assets.WEIGHTS / f"{name}.md", card_markdown(name, meta, size))
    return assets.WEIGHTS / name
