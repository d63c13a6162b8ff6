"""Checkpoints: safetensors for tensors, JSON for everything else; atomic writes; a SHA-256 of
the tensors (and of the config) that ``load`` verifies; never unpickle."""
from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save as st_bytes

from .errors import EffdiffError
from .io import atomic_write, parse_json

_META_KEY, _ID_KEY, _SHA_KEY = "effdiff_meta", "effdiff_write_id", "effdiff_sha256"
SHA_FIELD = "sha256"          # in the JSON: {"tensors": hex, "config": hex}
UNPINNED = ("card",)          # free-form provenance (metrics, wall time) that may be edited
MODEL_FORMAT = "effdiff-model-1"   # a model export: its "kind" names what the pinned keys build


class CheckpointError(EffdiffError, RuntimeError):
    """A checkpoint is missing, corrupt or does not match the model it is loaded into."""


SUFFIXES = (".safetensors", ".json")


def files(path) -> tuple[Path, Path]:
    """The (tensors, JSON) file pair that a checkpoint path names, for every reader and writer: a
    path ending in ``.safetensors`` or ``.json`` names that pair; any other path is the stem, its
    name kept whole (``d/model.v2`` -> ``d/model.v2.safetensors``, never ``d/model.safetensors``)."""
    p = Path(path)
    name = p.name[:-len(p.suffix)] if p.suffix in SUFFIXES else p.name
    if name in ("", ".", ".."):
        raise ValueError(f"{str(path)!r} is not a checkpoint file name")
    return p.with_name(name + SUFFIXES[0]), p.with_name(name + SUFFIXES[1])


def stem(path) -> Path:
    """The path without a checkpoint suffix: ``files(stem(p)) == files(p)``."""
    st = files(path)[0]
    return st.with_name(st.name[:-len(SUFFIXES[0])])


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors in name order: name, dtype and shape, then the raw bytes."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu()
        h.update(json.dumps([k, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def pinned(meta: dict) -> dict:
    """The part of the metadata that defines the model: everything but the card (and a model export's
    ``kind``, which names what the rest builds and is checked by ``kinds``, so files written before
    kinds were recorded gain one without new hashes)."""
    skip = (*UNPINNED, _ID_KEY, SHA_FIELD, *(("kind",) if meta.get("format") == MODEL_FORMAT else ()))
    return {k: v for k, v in meta.items() if k not in skip}


def config_sha256(meta: dict) -> str:
    """SHA-256 of the canonical JSON of ``pinned(meta)``."""
    return hashlib.sha256(json.dumps(pinned(meta), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def integrity(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """The ``sha256`` field recorded beside ``tensors`` and ``meta``."""
    return {"tensors": tensors_sha256(tensors), "config": config_sha256(meta)}


def meta_json(meta: dict, sha: dict, write_id: str | None = None) -> str:
    """The JSON text of a checkpoint's metadata file."""
    extra = {_ID_KEY: write_id} if write_id else {}
    return json.dumps({**meta, **extra, SHA_FIELD: sha}, indent=1, sort_keys=True)


def save(path, tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Write ``path.safetensors`` and ``path.json`` atomically (tensors first, JSON last: a
    JSON file present means its tensors are complete). Both carry one write id, the SHA-256
    (returned) and the tensor header a copy of ``meta``, so a kill between the two renames (new
    tensors, old JSON) or a lost JSON is resolved to the metadata written with the tensors."""
    st, js = files(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    write_id, sha = uuid.uuid4().hex, integrity(tensors, meta)
    header = {_META_KEY: json.dumps(meta, sort_keys=True), _ID_KEY: write_id, _SHA_KEY: json.dumps(sha)}
    atomic_write(st, st_bytes(tensors, metadata=header))
    atomic_write(js, meta_json(meta, sha, write_id))
    return sha


def _read_json(text: str | bytes | None, where) -> dict | None:
    if text is None:
        return None
    out = parse_json(text, f"corrupt checkpoint metadata {where}", "JSON object", error=CheckpointError)
    if not isinstance(out, dict):
        raise CheckpointError(f"corrupt checkpoint metadata {where}: not a JSON object")
    return out


def _read_tensors(st: Path) -> tuple[dict, dict]:
    try:
        tensors = load_file(str(st))
        with safe_open(str(st), framework="pt") as f:
            return tensors, f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"corrupt checkpoint tensors {st}: {e}") from None


def _resolve(st: Path, js: Path, json_meta: dict | None, header: dict) -> tuple[dict, list]:
    """The metadata to trust and the SHA-256 records (with their source) that apply to the tensors."""
    header_meta = _read_json(header.get(_META_KEY), f"{st} (header)")
    header_sha = _read_json(header.get(_SHA_KEY), f"{st} (header)")
    records = [(header_sha, f"the header of {st}")] if header_sha else []
    if json_meta is None:
        if header_meta is None:
            raise CheckpointError(f"checkpoint file missing: {js} (and {st} carries no metadata to recover from)")
        return header_meta, records
    json_id, json_sha = json_meta.pop(_ID_KEY, None), json_meta.pop(SHA_FIELD, None)
    if json_sha is not None and not (isinstance(json_sha, dict) and isinstance(json_sha.get("tensors"), str)):
        raise CheckpointError(f"corrupt checkpoint metadata {js}: malformed {SHA_FIELD!r} field")
    if json_id is not None and header_meta is not None and header.get(_ID_KEY) not in (None, json_id):
        return header_meta, records  # killed between the two renames: the JSON lags behind the tensors
    if header_meta is not None and pinned(json_meta) != pinned(header_meta):
        keys = sorted(k for k in set(pinned(json_meta)) | set(pinned(header_meta))
                      if json_meta.get(k) != header_meta.get(k))
        raise CheckpointError(f"{js} does not match the metadata written with {st} (differs in {keys}); "
                              "the JSON was edited or belongs to other weights")
    if json_sha is not None:
        if json_sha.get("config") not in (None, config_sha256(json_meta)):
            raise CheckpointError(f"{js} was edited: its config no longer matches the SHA-256 recorded with "
                                  f"the weights (only 'card' may change); refusing to load")
        records.append((json_sha, str(js)))
    return json_meta, records


def load(path, require_sha256: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by ``save``, verifying its SHA-256; a clear ``CheckpointError``
    naming the file when it is missing, damaged, edited or (with ``require_sha256``) unverifiable."""
    st, js = files(path)
    if not st.exists():
        raise CheckpointError(f"checkpoint file missing: {st}")
    json_meta = _read_json(js.read_bytes() if js.exists() else None, js)
    tensors, header = _read_tensors(st)
    meta, records = _resolve(st, js, json_meta, header)
    if require_sha256 and not records:
        raise CheckpointError(f"{st}: no SHA-256 recorded (in {js.name} or the header); cannot verify it")
    got = tensors_sha256(tensors) if records else None
    for sha, source in records:
        if sha["tensors"] != got:
            raise CheckpointError(f"{st} is corrupt or was changed: the SHA-256 of its tensors is {got[:16]}..., "
                                  f"{source} records {sha['tensors'][:16]}...; refusing to load")
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
