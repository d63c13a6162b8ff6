"""Depth / head pruning of a zoo model, a short fine-tune, and its quality and speed against the
unpruned model with the same noise (issue 11).

    taskset -c 1 python -m effdiff.bench.studies prune-depth --model digits-dit --drop 0.4 --steps 800 --out bench-out/prune

Depth: ``--drop`` (a MAC share, or an int: blocks) chosen by ``--criterion`` on a 32-sample DDIM-10 run
(noise seed 12345, not an evaluation seed); heads: ``--heads`` (share of each layer's heads, Taylor
importance). Then ``finetune(den, steps)``; FD against held-out digits at DDIM 10 steps, n per
seed, noise seeds 0, 1, 2, labels i % 10, paired with the unpruned model; ms/sample of the two
models timed interleaved in this process. Writes <out>/<tag>.json (results) and <out>/<tag>-model.{json,safetensors} (the pruned model).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from ... import techniques as T
from ... import timesteps, zoo
from ...data import class_labels
from ...metrics import score
from ...prune.depth import DepthPruningConfig, net_macs
from ...prune.diff_pruning import finetune
from ...prune.heads import HeadPruningConfig
from ...prune.io import load_pruned, save_pruned
from ...sampling import initial, sample
from ..scoring import dataset_of, mean_sd, paired_change, pct_ci
from . import register
from .compress import calibration


def generate(den, sig, n: int, seed: int, solver: str):
    labels = class_labels(n, den.cond_classes)
    with torch.no_grad():
        return sample(den, initial(den, n, sig, seed=seed, cond=labels), sig, solver, cond=labels), labels


def fds(den, sig, n, seeds, solver):
    out = []
    for s in seeds:
        x, labels = generate(den, sig, n, s, solver)
        out.append(float(score(x, labels, dataset=dataset_of(den), seed=s)["fd"]))
    return out


def interleaved_ms(dens: dict, sig, solver: str, batch: int = 50, repeats: int = 5) -> dict:
    """ms/sample of each model, alternating them in each repeat (one warm-up each); median and all."""
    times = {k: [] for k in dens}
    for k, d in dens.items():
        generate(d, sig, batch, 99, solver)
    for _ in range(repeats):
        for k, d in dens.items():
            t0 = time.perf_counter()
            generate(d, sig, batch, 99, solver)
            times[k].append(1000 * (time.perf_counter() - t0) / batch)
    return {k: {"median": statistics.median(v), "all": v} for k, v in times.items()}


@register("prune-depth")
def main(argv=None):
    """Depth / head pruning of a zoo model, a short fine-tune, quality and speed against the unpruned model."""
    ap = argparse.ArgumentParser(prog="prune-depth", description=__doc__)
    ap.add_argument("--model", default="digits-dit")
    ap.add_argument("--drop", default="0.4", help="float: MAC share removed by depth pruning; int: blocks; 0: none")
    ap.add_argument("--criterion", default="greedy")
    ap.add_argument("--error", default="x0")
    ap.add_argument("--heads", type=float, default=0.0, help="share of each attention layer's heads removed")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--solver", default="ddim")
    ap.add_argument("--out", default="bench-out/prune")
    ap.add_argument("--tag", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    drop = float(a.drop) if "." in a.drop else int(a.drop)
    tag = a.tag or f"{a.model}-drop{a.drop}-heads{a.heads}-{a.criterion}-ft{a.steps}"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    base, den = zoo.load(a.model), zoo.load(a.model)
    sig = timesteps.get("uniform", 10, base.process)
    run = calibration(den, sig, class_labels(32, den.cond_classes), a.solver)
    res = {"model": a.model, "args": vars(a), "solver": a.solver, "steps": 10, "n": a.n, "seeds": a.seeds,
           "macs_before": net_macs(base.net), "params_before": sum(p.numel() for p in base.net.parameters())}
    t0 = time.time()
    if drop:
        cfg = T.get("depth-pruning").prepare(den, DepthPruningConfig(drop=drop, criterion=a.criterion, error=a.error), run)
        h = T.get("depth-pruning").apply(den, cfg)
        res["dropped"], res["sensitivity"] = list(cfg.blocks), cfg.sensitivity
    if a.heads:
        hc = T.get("head-pruning").prepare(den, HeadPruningConfig(ratio=a.heads), run)
        T.get("head-pruning").apply(den, hc)
        res["heads_kept"] = {k: v.tolist() for k, v in hc.keep.items()}
    res["prepare_s"] = time.time() - t0
    res["macs_after"] = net_macs(den.net)
    res["params_after"] = sum(p.numel() for p in den.net.parameters())
    res["macs_removed"] = 1 - res["macs_after"] / res["macs_before"]
    print(tag, {k: res[k] for k in ("macs_before", "macs_after", "macs_removed", "prepare_s")}, res.get("dropped"), flush=True)
    res["fd_base"] = fds(base, sig, a.n, a.seeds, a.solver)
    res["fd_pruned_no_ft"] = fds(den, sig, a.n, a.seeds, a.solver)
    t0 = time.time()
    losses = finetune(den, steps=a.steps)
    res["finetune_s"] = time.time() - t0
    res["finetune_loss"] = [mean_sd(losses[:20])[0], mean_sd(losses[-50:])[0]] if losses else None
    res["fd_pruned"] = fds(den, sig, a.n, a.seeds, a.solver)
    for k in ("fd_pruned_no_ft", "fd_pruned"):
        c, ci = paired_change(res[k], res["fd_base"])
        res[k + "_change"] = {"mean": c, "ci": ci, "text": pct_ci(c, ci)}
    res["ms_per_sample"] = interleaved_ms({"base": base, "pruned": den}, sig, a.solver)
    res["speedup"] = res["ms_per_sample"]["base"]["median"] / res["ms_per_sample"]["pruned"]["median"]
    save_pruned(den, out / f"{tag}-model", card={"pruned_by": f"effdiff.bench.studies prune-depth {tag}", "finetune_steps": a.steps})
    x, lab = initial(den, 4, sig, seed=0), class_labels(4, den.cond_classes)
    res["reload_identical"] = bool(torch.equal(load_pruned(out / f"{tag}-model")(x, torch.ones(4), lab),
                                               den(x, torch.ones(4), lab)))
    (out / f"{tag}.json").write_text(json.dumps(res, indent=1))
    print(tag, "FD base", res["fd_base"], "no-ft", res["fd_pruned_no_ft_change"]["text"], "ft",
          res["fd_pruned"], res["fd_pruned_change"]["text"], f"speedup {res['speedup']:.2f}x", flush=True)

