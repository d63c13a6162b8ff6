"""The model zoo: checkpoints trained by this project's own ``effdiff train`` presets on data that
ships with scikit-learn, stored in the package (safetensors + JSON + a card). Nothing downloads.

    den = ed.zoo.load("digits-unet")          # a class-conditional denoiser D(x, sigma, cond)
    clf = ed.zoo.load("digits-classifier")    # the metrics' feature network
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import assets, checkpoint as ckpt
from ..aliases import alias
from ..assets import card, names
from ..io import atomic_write
from ..kinds import check_config as _check_config, denoiser as _denoiser, from_checkpoint, install_meta, kind_of, load

__all__ = ["WEIGHTS", "names", "card", "load", "from_checkpoint", "install", "card_markdown"]


def _path(name: str):
    return assets.path(name)


def install(model_path, name: str, extra_metrics: dict | None = None) -> Path:
    """Copy an exported model (``run_dir/model``) into the zoo as ``name`` and write its card
    (``name.md``); ``extra_metrics`` (e.g. the bench's FD) are added to the card's metrics.
    The JSON records the SHA-256 that ``load`` verifies; every file is written atomically."""
    src = Path(model_path)
    tensors, meta = ckpt.load(src)            # validates before installing
    if extra_metrics:
        meta["card"]["metrics"].update(extra_metrics)
    meta.setdefault("kind", kind_of(meta))
    extra = install_meta(meta, str(src))      # a latent model: its autoencoder and scale (header too)
    if extra:
        meta = {**meta, **extra}
        ckpt.save(assets.WEIGHTS / name, tensors, meta)
    else:
        atomic_write(assets.WEIGHTS / f"{name}.safetensors", src.with_suffix(".safetensors").read_bytes())
        atomic_write(assets.WEIGHTS / f"{name}.json", ckpt.meta_json(meta, ckpt.integrity(tensors, meta)))
    atomic_write(assets.WEIGHTS / f"{name}.md", card_markdown(name, meta))
    return assets.WEIGHTS / name


def card_markdown(name: str, meta: dict) -> str:
    c = meta["card"]
    size = (assets.WEIGHTS / f"{name}.safetensors").stat().st_size if (assets.WEIGHTS / f"{name}.safetensors").exists() else 0
    lines = [f"# {name}", "",
             f"- architecture: `{meta['arch']}` {json.dumps(meta['model'])}",
             f"- task: {meta['task']}" + (f", process {json.dumps(meta['process'])}, prediction `{meta['prediction']}`"
                                          if meta["task"] == "diffusion" else ""),
             f"- preset: `{c['preset']}`, seed {c['seed']}, {c['steps']} steps, batch {c['batch_size']}",
             *([f"- latent model: samples are `{meta['latent']['autoencoder']}` latents scaled by "
                f"{meta['latent']['scale']:.6g}, decoded to {meta['latent']['data']} images"] if meta.get("latent") else []),
             *([f"- latent space: {meta['latent_space']['shape']}, scale 1/std = {meta['latent_space']['scale']:.6g} "
                f"({meta['latent_space']['from']}, {meta['latent_space']['measured_on']})"] if meta.get("latent_space") else []),
             f"- wall time: {c['wall_time_s']} s on {c['machine']['processor']} ({c['machine']['threads']} threads, "
             f"torch {c['machine']['torch']}, {c['machine']['platform']})",
             f"- file: {size / 1e6:.2f} MB safetensors (EMA weights, float32)",
             *(_student_lines(meta) if "student" in meta else []),
             f"- reproduce: `{c['command']}` then `python -c \"import effdiff as ed; ed.zoo.install('"
             f"{c.get('export', 'DIR/model')}', '{name}')\"`",
             "", "## Metrics", ""]
    lines += [f"- {k}: {v}" for k, v in sorted(c["metrics"].items())] or ["- (none recorded)"]
    return "\n".join(lines) + "\n"


def _student_lines(meta: dict) -> list[str]:
    """A distilled student's card lines: method, steps and solver, teacher (and the chain's root), cost."""
    c, st = meta["card"], meta["student"]
    teacher = f"`{c.get('teacher')}`" + (f" (root teacher `{c['root_teacher']}`)"
                                         if c.get("root_teacher") not in (None, c.get("teacher")) else "")
    total = (f"; with its teacher chain {c['teacher_nfe_total']:,} teacher NFE, {c['wall_time_total_s']} s"
             if "teacher_nfe_total" in c else "")
    return [f"- distilled student: method `{st['method']}`, {st['steps']} step(s) with the `{st['solver']}` solver "
            f"on its own grid (`effdiff.distill.grid`; `ed.zoo.load(name).generate(n, cond, seed)`)",
            f"- teacher: {teacher}; {c['teacher_nfe']:,} teacher NFE (per-sample teacher evaluations) in "
            f"{c['steps']} optimizer steps, {c['wall_time_s']} s{total}"]


alias(__name__, assets, "WEIGHTS")     # zoo.WEIGHTS is assets.WEIGHTS
