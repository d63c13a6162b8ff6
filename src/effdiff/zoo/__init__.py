"""The model zoo: checkpoints trained by this project's own ``effdiff train`` presets on data that
ships with scikit-learn, stored in the package (safetensors + JSON + a card). Nothing downloads.

    den = ed.zoo.load("digits-unet")          # a class-conditional denoiser D(x, sigma, cond)
    clf = ed.zoo.load("digits-classifier")    # the metrics' feature network
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import checkpoint as ckpt
from ..denoisers import Denoiser, EDMDenoiser
from ..io import atomic_write
from ..models import build
from ..process import from_config

WEIGHTS = Path(__file__).parent / "weights"


def names() -> list[str]:
    """Every shipped model name."""
    return sorted(p.stem for p in WEIGHTS.glob("*.json"))


def _path(name: str) -> Path:
    if name not in names():
        raise KeyError(f"unknown zoo model {name!r}; shipped models: {', '.join(names()) or '(none)'}")
    return WEIGHTS / name


def card(name: str) -> dict:
    """The model's JSON metadata: architecture, process, and its card (preset, seed, steps, metrics)."""
    return json.loads(_path(name).with_suffix(".json").read_text())


def _check_config(meta: dict, where: str) -> None:
    """The metadata's conditioning agrees with the network config that the tensors are checked against."""
    if meta["task"] != "diffusion":
        return
    k_meta, k_net = meta.get("num_classes", 0), meta["model"].get("num_classes", 0)
    if k_meta != k_net:
        raise ckpt.CheckpointError(f"{where}: num_classes {k_meta!r} does not match the network's {k_net!r}")


def _denoiser(net, meta: dict, where: str):
    try:
        if meta.get("prediction") == "edm":
            return EDMDenoiser(net, num_classes=meta.get("num_classes", 0))
        return Denoiser(net, from_config(meta["process"]), meta["prediction"], meta.get("num_classes", 0))
    except (KeyError, TypeError, ValueError) as e:
        raise ckpt.CheckpointError(f"{where}: invalid process/prediction in its metadata: {e}") from None


def from_checkpoint(path, where: str | None = None, require_sha256: bool = False):
    """Rebuild a model exported by ``Trainer.export`` (``path`` without suffix): a ``Denoiser``
    for diffusion models (EMA weights, eval mode), the bare network otherwise. The SHA-256 and
    the config are verified against the tensors (``CheckpointError`` naming the file)."""
    tensors, meta = ckpt.load(path, require_sha256=require_sha256)
    where = where or str(path)
    for key in ("arch", "model", "task"):
        if key not in meta:
            raise ckpt.CheckpointError(f"{where}: metadata lacks {key!r}; not an effdiff model export")
    _check_config(meta, where)
    if "student" in meta:                 # a distilled student keeps its wrapper (consistency form, w input)
        from ..distill.student import from_meta
        return from_meta(tensors, meta, where)
    if "prior" in meta:                   # PriorGrad: the network plus its data-dependent prior
        from ..training.priorgrad import from_meta
        return from_meta(tensors, meta, where)
    try:
        net = build(meta["arch"], meta["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise ckpt.CheckpointError(f"{where}: invalid model config in its metadata: {e}") from None
    ckpt.load_state(net, tensors, where=where)
    net.eval().requires_grad_(False)
    if meta["task"] != "diffusion":
        return net
    den = _denoiser(net, meta, where)
    den.meta = meta
    from ..latent.zoo import wrap            # a model trained on autoencoder latents: a LatentDenoiser
    return wrap(den.eval(), meta, where)


def load(name: str):
    """A shipped model by name (see ``names()``)."""
    return from_checkpoint(_path(name), where=f"zoo model {name!r}", require_sha256=True)


def install(model_path, name: str, extra_metrics: dict | None = None) -> Path:
    """Copy an exported model (``run_dir/model``) into the zoo as ``name`` and write its card
    (``name.md``); ``extra_metrics`` (e.g. the bench's FD) are added to the card's metrics.
    The JSON records the SHA-256 that ``load`` verifies; every file is written atomically."""
    src = Path(model_path)
    tensors, meta = ckpt.load(src)            # validates before installing
    if extra_metrics:
        meta["card"]["metrics"].update(extra_metrics)
    from ..latent.zoo import resolve         # a latent model: record its autoencoder and scale (header too)
    latent = resolve(meta, str(src)) if meta.get("task") == "diffusion" else None
    if latent is not None:
        ckpt.save(WEIGHTS / name, tensors, {**meta, "latent": latent})
    else:
        atomic_write(WEIGHTS / f"{name}.safetensors", src.with_suffix(".safetensors").read_bytes())
        atomic_write(WEIGHTS / f"{name}.json", ckpt.meta_json(meta, ckpt.integrity(tensors, meta)))
    meta = {**meta, "latent": latent} if latent is not None else meta
    atomic_write(WEIGHTS / f"{name}.md", card_markdown(name, meta))
    return WEIGHTS / name


def card_markdown(name: str, meta: dict) -> str:
    c = meta["card"]
    size = (WEIGHTS / f"{name}.safetensors").stat().st_size if (WEIGHTS / f"{name}.safetensors").exists() else 0
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
