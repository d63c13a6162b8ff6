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


def from_checkpoint(path, where: str | None = None):
    """Rebuild a model exported by ``Trainer.export`` (``path`` without suffix): a ``Denoiser``
    for diffusion models (EMA weights, eval mode), the bare network otherwise."""
    tensors, meta = ckpt.load(path)
    where = where or str(path)
    for key in ("arch", "model", "task"):
        if key not in meta:
            raise ckpt.CheckpointError(f"{where}: metadata lacks {key!r}; not an effdiff model export")
    net = build(meta["arch"], meta["model"])
    ckpt.load_state(net, tensors, where=where)
    net.eval().requires_grad_(False)
    if meta["task"] != "diffusion":
        return net
    if meta.get("prediction") == "edm":
        den = EDMDenoiser(net, num_classes=meta.get("num_classes", 0))
    else:
        den = Denoiser(net, from_config(meta["process"]), meta["prediction"], meta.get("num_classes", 0))
    den.meta = meta
    return den.eval()


def load(name: str):
    """A shipped model by name (see ``names()``)."""
    return from_checkpoint(_path(name), where=f"zoo model {name!r}")


def install(model_path, name: str, extra_metrics: dict | None = None) -> Path:
    """Copy an exported model (``run_dir/model``) into the zoo as ``name`` and write its card
    (``name.md``); ``extra_metrics`` (e.g. the bench's FD) are added to the card's metrics."""
    import shutil
    src = Path(model_path)
    tensors, meta = ckpt.load(src)            # validates before installing
    if extra_metrics:
        meta["card"]["metrics"].update(extra_metrics)
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src.with_suffix(".safetensors"), WEIGHTS / f"{name}.safetensors")
    (WEIGHTS / f"{name}.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    (WEIGHTS / f"{name}.md").write_text(card_markdown(name, meta))
    return WEIGHTS / name


def card_markdown(name: str, meta: dict) -> str:
    c = meta["card"]
    size = (WEIGHTS / f"{name}.safetensors").stat().st_size if (WEIGHTS / f"{name}.safetensors").exists() else 0
    lines = [f"# {name}", "",
             f"- architecture: `{meta['arch']}` {json.dumps(meta['model'])}",
             f"- task: {meta['task']}" + (f", process {json.dumps(meta['process'])}, prediction `{meta['prediction']}`"
                                          if meta["task"] == "diffusion" else ""),
             f"- preset: `{c['preset']}`, seed {c['seed']}, {c['steps']} steps, batch {c['batch_size']}",
             f"- wall time: {c['wall_time_s']} s on {c['machine']['processor']} ({c['machine']['threads']} threads, "
             f"torch {c['machine']['torch']}, {c['machine']['platform']})",
             f"- file: {size / 1e6:.2f} MB safetensors (EMA weights, float32)",
             f"- reproduce: `{c['command']}` then `python -c \"import effdiff as ed; ed.zoo.install('DIR/model', '{name}')\"`",
             "", "## Metrics", ""]
    lines += [f"- {k}: {v}" for k, v in sorted(c["metrics"].items())] or ["- (none recorded)"]
    return "\n".join(lines) + "\n"
