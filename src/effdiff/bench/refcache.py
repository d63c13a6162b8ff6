"""Reference rows computed once: a bench row's per-seed scores on disk, keyed by everything that
decides them (model weights hash, evaluation network hash, solver, schedule, steps, options,
guidance, samples per seed, seeds).

Same seed, same samples: a reference row (DDPM-1000 on digits-unet is most of the default bench)
scores the same in every run, so its scores are read back instead of recomputed. Its time is still
measured in this run, on the first ``TIMED_STEPS`` steps of the full batch, scaled to all its
evaluations (every evaluation of a hook-free solver costs the same). Entries live in the user cache
(``$EFFDIFF_CACHE`` or ``~/.cache/effdiff``) under ``bench-ref/``, and ship for the default suite's
references in ``bench/reference_rows/`` (regenerate: ``python -m effdiff.bench.refcache_make``). A bench run
says which rows came from where; ``effdiff bench --no-cache`` recomputes everything.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import torch

from ..io import atomic_write

VERSION = 1                     # bump when sampling or scoring changes what a key produces
TIMED_STEPS = 20                # a cached reference is timed on this many steps of the full batch
SHIPPED = Path(__file__).resolve().parent / "reference_rows"


def user_dir() -> Path:
    return Path(os.environ.get("EFFDIFF_CACHE") or Path.home() / ".cache" / "effdiff") / "bench-ref"


def tensors_hash(module) -> str:
    """SHA-256 over a module's state (names, shapes and float32 bytes), the identity of its weights."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def cacheable(cfg) -> bool:
    """Plain reference rows only: no hooks, no custom generator, not a trajectory reference."""
    return cfg.reference and not cfg.traj_ref and cfg.setup is None and cfg.generate is None


def key(cfg, den, ev, scale: float, n: int, seeds: list[int]) -> dict:
    return {"version": VERSION, "model": cfg.model, "weights": tensors_hash(den), "eval": tensors_hash(ev.net),
            "dataset": ev.dataset, "solver": cfg.solver, "schedule": cfg.schedule, "steps": cfg.steps,
            "options": cfg.options, "schedule_options": cfg.schedule_options, "guidance": scale, "n": n,
            "seeds": list(seeds), "torch": torch.__version__.split("+")[0]}


def _name(k: dict) -> str:
    digest = hashlib.sha256(json.dumps(k, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return f"{k['model']}__{k['solver']}-{k['steps']}__n{k['n']}__s{len(k['seeds'])}__{digest}.json"


def lookup(k: dict) -> tuple[dict, Path] | tuple[None, None]:
    """(entry, its file) from the user cache, then the shipped one; (None, None) when absent."""
    for folder in (user_dir(), SHIPPED):
        p = folder / _name(k)
        if p.is_file() and not p.is_symlink():
            try:
                entry = json.loads(p.read_text())
            except (OSError, ValueError):
                continue                                  # a damaged cache entry is recomputed
            if entry.get("key") == json.loads(json.dumps(k, default=str)):
                return entry, p
    return None, None


def store(k: dict, per_seed: dict, nfe: int, grid_png: bytes | None, folder: Path | None = None) -> Path:
    """Write an entry atomically (default: the user cache)."""
    folder = folder or user_dir()
    folder.mkdir(parents=True, exist_ok=True)
    entry = {"key": k, "nfe": nfe, "per_seed": {str(s): q for s, q in per_seed.items()},
             "grid_png": base64.b64encode(grid_png).decode() if grid_png else None}
    return atomic_write(folder / _name(k), json.dumps(entry, default=float))


def per_seed(entry: dict) -> dict:
    return {int(s): q for s, q in entry["per_seed"].items()}


def grid_png(entry: dict) -> bytes | None:
    return base64.b64decode(entry["grid_png"]) if entry.get("grid_png") else None
