"""Zoo cards: the Markdown beside every shipped file, built from its JSON metadata. One builder for every
task: a model export (architecture, process, preset, latent space, a student's teacher) or an adapter /
control module (its base model, method and trainable parameters); both end in the metrics section."""
from __future__ import annotations

import json

from .. import assets

ADAPTER_TASKS = ("lora", "control")


def card_markdown(name: str, meta: dict, size: int | None = None) -> str:
    """The card of zoo file ``name`` (``size``: its safetensors bytes, read from the zoo when None)."""
    if size is None:
        path = assets.WEIGHTS / f"{name}.safetensors"
        size = path.stat().st_size if path.exists() else 0
    body = _adapter_lines(meta, size) if meta["task"] in ADAPTER_TASKS else _model_lines(name, meta, size)
    metrics = [f"- {k}: {v}" for k, v in sorted(meta["card"]["metrics"].items())] or ["- (none recorded)"]
    return "\n".join([f"# {name}", "", *body, "", "## Metrics", "", *metrics]) + "\n"


def _model_lines(name: str, meta: dict, size: int) -> list[str]:
    c = meta["card"]
    return [f"- architecture: `{meta['arch']}` {json.dumps(meta['model'])}",
            f"- task: {meta['task']}" + (f", process {json.dumps(meta['process'])}, prediction `{meta['prediction']}`"
                                         if meta["task"] == "diffusion" else ""),
            f"- preset: `{c['preset']}`, seed {c['seed']}, {c['steps']} steps, batch {c['batch_size']}",
            *([f"- latent model: samples are `{meta['latent']['autoencoder']}` latents scaled by "
               f"{meta['latent']['scale']:.6g}, decoded to {meta['latent']['data']} images"] if meta.get("latent") else []),
            *([f"- latent space: {meta['latent_space']['shape']}, scale 1/std = {meta['latent_space']['scale']:.6g} "
               f"({meta['latent_space']['from']}, {meta['latent_space']['measured_on']})"]
              if meta.get("latent_space") else []),
            f"- wall time: {c['wall_time_s']} s on {c['machine']['processor']} ({c['machine']['threads']} threads, "
            f"torch {c['machine']['torch']}, {c['machine']['platform']})",
            f"- file: {size / 1e6:.2f} MB safetensors ({c.get('weights', 'EMA weights')}, float32)",
            *(_student_lines(meta) if "student" in meta else []),
            *([f"- training: {c['training']['note']}"] if isinstance(c.get("training"), dict) and c["training"].get("note")
              else []),
            f"- reproduce: `{c['command']}` then `python -c \"import effdiff as ed; ed.zoo.install('"
            f"{c.get('export', 'DIR/model')}', '{name}')\"`"]


def _adapter_lines(meta: dict, size: int) -> list[str]:
    """A LoRA / control file's lines: what it adapts, its size, how it was trained."""
    c = meta["card"]
    return [f"- {meta['task']} on `{c['base']}` ({c['method']} {json.dumps(c['method_args'])}), target domain "
            f"`{c['domain']}`, condition `{c['condition']}`",
            f"- {c['trainable_params']:,} trainable parameters; file {size / 1e3:.0f} KB (safetensors, float32)",
            f"- preset `{c['preset']}`, seed {c['seed']}, {c['steps']} steps, batch {c['batch_size']}, lr {c['lr']}",
            f"- wall time: {c['wall_time_s']} s on {c['machine']['processor']} ({c['machine']['threads']} thread, "
            f"torch {c['machine']['torch']}; a shared, loaded machine)",
            f"- reproduce: `python -c \"from effdiff.finetune import preset, finetune; "
            f"finetune(preset('{c['preset']}', seed={c['seed']}), 'DIR')\"` (or `{c['command']}`)"]


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
