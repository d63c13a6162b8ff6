"""``effdiff bench --suite finetune``: fine-tuning methods on the zoo backbones, each trained (or
resumed) by its preset on 3 training seeds and sampled with the same noise as the base model.

Rows: ``base`` (the zoo model, no fine-tuning), ``full`` and ``lora`` (thick-stroke digits, LoRA also
merged into the weights: ``lora-merged``), and the control modules ``controlnet``,
``controlnet-xs`` and ``t2i-adapter`` (Sobel edge maps of held-out digits; the DiT: ControlNet only). Beside the runner's
timing and source-domain scores, each row gets: trainable parameters, file size, training wall
time, FD against the held-out *target* split in the evaluation network's features (mean ± sd and a
95% t-interval over seeds: sampling seed s uses the model trained with seed s), and edge adherence
(IoU / MSE between the condition and the sample's own edge map; the base row is the same noise
without control). Trained runs live in ``$EFFDIFF_FINETUNE_RUNS`` (default ``runs/finetune``);
``--quick`` trains 40-step versions on one seed into ``runs/finetune-quick``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .. import zoo
from ..checkpoint import files as ckpt_files
from ..finetune import PRESETS, adherence, condition, domain, finetune, load, merge, preset
from ..finetune.control import Controlled, controlled_denoiser
from ..metrics import Evaluation
from ..sampling import sample
from .config import SUITES, BenchConfig, register_suite, save_table  # noqa: F401  (fb.SUITES, as before)
from .scoring import mean_sd, pm, t_interval

STEPS, SOLVER = 20, "ddim"
TRAIN_SEEDS = {False: (0, 1, 2), True: (0,)}
QUICK_TRAINING = dict(steps=40, batch_size=16, warmup=5, ckpt_every=20)
ROWS: dict[tuple[str, str], "Row"] = {}       # (model, row label) -> the row's state for the follow-up
STEP_COSTS = True      # the follow-up times every trained row's training step (a study may skip it)


def runs_root(quick: bool) -> Path:
    root = Path(os.environ.get("EFFDIFF_FINETUNE_RUNS", "runs/finetune"))
    return root.with_name(root.name + "-quick") if quick else root


def trained(name: str, seed: int, quick: bool) -> Path:
    """The exported model of preset ``name`` trained with ``seed`` (trains or resumes it first)."""
    d = runs_root(quick) / f"{name}-s{seed}"
    if not (d / "model.json").exists():
        cfg = preset(name, seed=seed, **(QUICK_TRAINING if quick else {}))
        finetune(cfg, d, resume=(d / "checkpoint.json").exists(), progress=False)
    return d / "model"


def hints_for(labels: torch.Tensor, name: str = "edges") -> torch.Tensor:
    """Condition maps of held-out digits, one per label: sample i follows the (i // 10)-th test image of its class."""
    x, y = domain("identity", "test")
    by_class = [(y == c).nonzero().flatten() for c in range(int(y.max()) + 1)]
    idx = torch.stack([by_class[c][(i // 10) % len(by_class[c])] for i, c in enumerate(labels.tolist())])
    return condition(name, x[idx])


class Row:
    """One method on one backbone: trained models per seed, their samples per sampling seed."""

    def __init__(self, model: str, label: str, preset_name: str | None, quick: bool, merged: bool = False):
        self.model, self.label, self.preset, self.quick, self.merged = model, label, preset_name, quick, merged
        self.samples: dict[int, torch.Tensor] = {}
        self.paths: list[Path] = []
        self.hint = self.labels = None
        self.handles: list = []

    @property
    def config(self):
        return PRESETS[self.preset] if self.preset else None

    def setup(self, den, sigmas, x, labels):
        self.labels = labels
        self.hint = hints_for(labels)
        if self.preset is None:
            self.models = [den]
        else:
            self.paths = [trained(self.preset, s, self.quick) for s in TRAIN_SEEDS[self.quick]]
            self.models = [self._denoiser(p) for p in self.paths]
        return self

    def _denoiser(self, path: Path):
        m = load(self.model, path)
        if isinstance(m, Controlled):
            return m
        if self.merged:
            self.handles.append(merge(m))
        return m

    def generate(self, den, D, x, sigmas, labels, seed):
        m = self.models[seed % len(self.models)]
        if isinstance(m, Controlled):                     # bound to the maps of this batch's samples
            m = controlled_denoiser(den, m, self.hint[: len(x)])
        res = sample(m, x, sigmas, solver=SOLVER, cond=labels, seed=seed, return_info=True)
        self.samples.setdefault(seed, res.x)              # the first (full-batch) run of each seed
        return res

    def remove(self):
        for h in self.handles:
            h.unmerge()
        self.handles = []


def _finetune(model: str, quick: bool) -> list[BenchConfig]:
    rows = [("base", None)]
    rows += [(m, f"{model}-{m}-thick") for m in ("full", "lora")]
    rows += [(k, f"{model}-{k}-edges") for k in ("controlnet", "controlnet-xs", "t2i-adapter")]   # presets that exist
    out = []
    for label, name in rows:
        if name is not None and name not in PRESETS:
            continue
        for merged in ((False, True) if label == "lora" else (False,)):
            row = Row(model, label + ("-merged" if merged else ""), name, quick, merged)
            ROWS[(model, row.label)] = row
            out.append(BenchConfig(model, row.label, SOLVER, "uniform", STEPS, reference=name is None,
                                   baseline=None if name is None else "base", setup=row.setup, generate=row.generate))
    return out


def step_costs(names: list[str], batch_size: int, rounds: int = 3, steps: int = 3) -> dict[str, dict]:
    """Per preset: median ms per training step (timed interleaved with the others, after one warm-up
    step, so every method sees the same machine load) and peak extra tensor memory of one step."""
    import tempfile
    import time
    from ..finetune import FinetuneTrainer
    from ..metrics import peak_memory
    with tempfile.TemporaryDirectory() as tmp:
        trs = {n: FinetuneTrainer(preset(n, batch_size=batch_size), Path(tmp) / n, progress=False) for n in names}
        for tr in trs.values():
            tr.train_step()
        times: dict[str, list] = {n: [] for n in names}
        for _ in range(rounds):
            for n, tr in trs.items():
                t0 = time.perf_counter()
                for _ in range(steps):
                    tr.train_step()
                times[n].append(1000 * (time.perf_counter() - t0) / steps)
        return {n: {"train_ms_per_step": sorted(t)[len(t) // 2], "train_peak_bytes": peak_memory(trs[n].train_step)}
                for n, t in times.items()}


def _card(path: Path) -> dict:
    import json
    return json.loads(ckpt_files(path)[1].read_text())["card"]


def _stats(values: list[float], key: str) -> dict:
    m, sd = mean_sd(values)
    return {key: m, f"{key}_sd": sd, f"{key}_ci": t_interval(values), f"{key}_per_seed": values}


def evaluations() -> dict:
    """Target-domain evaluation (held-out target split as reference, in the digits evaluation network)."""
    return {"thick": Evaluation("digits", net=zoo.load("digits-eval"), reference=domain("thick", "test"),
                                train=domain("thick", "train"))}


def follow_up(results: dict, configs, _measure) -> None:
    """Add target FD, adherence, trainable parameters, file size and train time to each row."""
    ev = evaluations()["thick"]
    for r in results["rows"]:
        row = ROWS.get((r["model"], r["config"]))
        if row is None or not row.samples:
            continue
        seeds = sorted(row.samples)
        cfg = row.config
        if cfg is None or not cfg.condition:
            r.update(_stats([ev.quality(row.samples[s], row.labels)["fd"] for s in seeds], "fd_target"))
        if cfg is None or cfg.condition:
            adh = [adherence("edges", row.samples[s], row.hint) for s in seeds]
            r.update(_stats([a["iou"] for a in adh], "edge_iou"))
            r.update(_stats([a["mse"] for a in adh], "edge_mse"))
        if row.paths:
            cards = [_card(p) for p in row.paths]
            r["trainable_params"] = cards[0]["trainable_params"]
            r["file_bytes"] = ckpt_files(row.paths[0])[0].stat().st_size
            r["train_wall_s"], r["train_wall_s_sd"] = mean_sd([c["wall_time_s"] for c in cards])
            r["train_steps"], r["train_seeds"] = cards[0]["steps"], [c["seed"] for c in cards]
        else:
            r["trainable_params"] = r["file_bytes"] = 0
        r["base_params"] = sum(p.numel() for p in zoo.load(r["model"]).net.parameters())
    if STEP_COSTS:
        add_step_costs(results)


def add_step_costs(results: dict) -> None:
    """Training cost per step of every trained row, measured side by side (see ``step_costs``)."""
    by_model: dict[str, list] = {}
    for r in results["rows"]:
        row = ROWS.get((r["model"], r["config"]))
        if row is not None and row.preset and not row.merged:
            by_model.setdefault(r["model"], []).append((r, row))
    for model, pairs in by_model.items():
        quick = pairs[0][1].quick
        batch = QUICK_TRAINING["batch_size"] if quick else PRESETS[pairs[0][1].preset].batch_size
        costs = step_costs([row.preset for _, row in pairs], batch, rounds=1 if quick else 3)
        for r, row in pairs:
            r.update(costs[row.preset])


def _ci(r: dict, key: str, d: int = 3) -> str:
    if key not in r:
        return ""
    lo, hi = r[f"{key}_ci"]
    ci = f" [{lo:.{d}f}, {hi:.{d}f}]" if lo is not None else ""
    return pm(r[key], r[f"{key}_sd"]) + ci


def report(results: dict, out: Path) -> str:
    lines = ["Fine-tuning: target = thick-stroke digits (FD vs its held-out split, 95% CI over seeds); control = "
             "Sobel edges of held-out digits (IoU / MSE of the sample's edges vs the condition).", "",
             "| model | method | trainable params (% of base) | file | train s | train ms/step | train peak MB | "
             "FD vs target | edge IoU | edge MSE | ms/sample | overhead vs base |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["rows"]:
        if "base_params" not in r:
            continue
        share = f"{r['trainable_params']:,} ({100 * r['trainable_params'] / r['base_params']:.1f}%)"
        size = f"{r['file_bytes'] / 1e3:.0f} KB" if r["file_bytes"] else ""
        train = f"{r['train_wall_s']:.0f} ± {r['train_wall_s_sd']:.0f}" if "train_wall_s" in r else ""
        over = f"{100 * (1 / r['speedup_vs_baseline'] - 1):+.0f}%" if "speedup_vs_baseline" in r else ""
        step = f"{r['train_ms_per_step']:.0f}" if "train_ms_per_step" in r else ""
        peak = f"{r['train_peak_bytes'] / 2 ** 20:.1f}" if "train_peak_bytes" in r else ""
        lines.append(f"| {r['model']} | {r['config']} | {share} | {size} | {train} | {step} | {peak} | {_ci(r, 'fd_target')} | "
                     f"{_ci(r, 'edge_iou')} | {_ci(r, 'edge_mse')} | {r['ms_per_sample']:.3f} | {over} |")
    return save_table(out, "finetune.md", lines)


register_suite("finetune", _finetune, models=["digits-unet", "digits-dit"], report=report, follow_up=follow_up)


_ROWS, _Row, _evaluations, _add_step_costs = ROWS, Row, evaluations, add_step_costs    # the old private names
