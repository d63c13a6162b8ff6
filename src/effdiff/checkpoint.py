"""Checkpoints: safetensors for tensors, JSON for everything else; atomic writes; never unpickle."""
from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file


_META_KEY, _ID_KEY = "effdiff_meta", "effdiff_write_id"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match the model it is loaded into."""


def _atomic(path: Path, write):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write ``path.safetensors`` and ``path.json`` atomically (tensors first, JSON last: a
    JSON file present means its tensors are complete). Both carry one write id and the tensor
    header a copy of ``meta``, so a kill between the two renames (new tensors, old JSON) is
    detected by ``load`` and resolved to the metadata written with the tensors."""
    path = Path(path)
    st, js = path.with_suffix(".safetensors"), path.with_suffix(".json")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    write_id = uuid.uuid4().hex
    header = {_META_KEY: json.dumps(meta, sort_keys=True), _ID_KEY: write_id}
    _atomic(st, lambda tmp: save_file(tensors, tmp, metadata=header))
    _atomic(js, lambda tmp: Path(tmp).write_text(json.dumps({**meta, _ID_KEY: write_id}, indent=1, sort_keys=True)))


def load(path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by ``save``; a clear ``CheckpointError`` when it is damaged."""
    path = Path(path)
    st, js = path.with_suffix(".safetensors"), path.with_suffix(".json")
    for p in (st, js):
        if not p.exists():
            raise CheckpointError(f"checkpoint file missing: {p}")
    try:
        meta = json.loads(js.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt checkpoint metadata {js}: {e}") from None
    try:
        tensors = load_file(str(st))
        with safe_open(str(st), framework="pt") as f:
            header = f.metadata() or {}
        # a JSON whose write id differs from the tensors' lags behind them (killed between the
        # two renames): use the metadata written with the tensors. A JSON without an id was
        # written by hand (or by the zoo) and is taken as it is.
        json_id = meta.pop(_ID_KEY, None) if isinstance(meta, dict) else None
        if json_id is not None and header.get(_ID_KEY) not in (None, json_id) and _META_KEY in header:
            meta = json.loads(header[_META_KEY])
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"corrupt checkpoint tensors {st}: {e}") from None
    return tensors, meta


def load_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str = "", where: str = "checkpoint") -> None:
    """Load ``prefix``-ed tensors into ``module`` strictly, naming any mismatch."""
    sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    if missing or extra:
        raise CheckpointError(f"{where} does not match the model: missing {missing[:5]}, unexpected {extra[:5]}")
    bad = [f"{k}: {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if sd[k].shape != v.shape]
    if bad:
        raise CheckpointError(f"{where} does not match the model, shape mismatch: {bad[:5]}")
    nonfinite = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if nonfinite:
        raise CheckpointError(f"{where} holds NaN/inf in {nonfinite[:5]}")
    module.load_state_dict(sd)
