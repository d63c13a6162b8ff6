"""Latent vs pixel diffusion on MNIST: training cost per step, sampling MACs and ms per sample (the
latent model's decode included, once per sample) and FD against held-out data, same solver and steps.

    taskset -c 0 python -m effdiff.bench.studies latent-compare --out bench-latent    # the timed comparison

Sampling rows come from ``effdiff.bench.run`` (warm-up, interleaved timed rounds, FD ± sd over seeds
through ``metrics.score``, real-vs-real at the same n); the FD difference is per seed (same seed and
labels for both models) with a 95% t-interval. Training cost: MACs per training sample (forward and
backward, FlopCounterMode) and the median wall time of optimizer steps of each preset's own Trainer
at its preset batch size (and per sample), after warm-up steps.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from torch.utils.flop_counter import FlopCounterMode

from ...latent.denoiser import decode_macs
from ...metrics import pinned_threads
from ..config import BenchConfig
from ..scoring import mean_sd, pm, t_interval
from ..timing import timed
from . import register

PAIR = ("mnist-unet", "mnist-ldm-dit")


def train_cost(preset_name: str, steps: int = 10, warmup: int = 3) -> dict:
    """Median seconds per optimizer step of ``preset_name``'s Trainer (its batch size), and MACs per
    training sample (forward + backward of the loss)."""
    from ...training import preset
    from ...training.trainer import trainer_class
    cfg = preset(preset_name, steps=warmup + steps + 1, ckpt_every=10 ** 6)
    with tempfile.TemporaryDirectory() as d:
        tr = trainer_class(cfg)(cfg, d, progress=False)
        for _ in range(warmup):
            tr.train_step()
        times = [timed(tr.train_step)[1] for _ in range(steps)]
        x, y = tr.batch()
        with FlopCounterMode(display=False) as fc:
            tr.loss_on(x, y).backward()
        tr.opt.zero_grad(set_to_none=True)
    s = statistics.median(times)
    return {"preset": preset_name, "batch_size": cfg.batch_size, "s_per_step": s, "s_per_step_sd": mean_sd(times)[1],
            "ms_per_train_sample": 1000 * s / cfg.batch_size, "train_macs_per_sample": fc.get_total_flops() / 2 / len(x),
            "timed_steps": steps}


def sampling_rows(models, solver: str, schedule: str, steps: int, n: int, seeds: int, threads: int,
                  repeats: int, out=None) -> dict:
    from ..runner import run
    configs = [BenchConfig(m, f"{solver}-{steps}", solver, schedule, steps, reference=True) for m in models]
    return run(models=list(models), configs=configs, n_samples=n, n_seeds=seeds, repeats=repeats, threads=threads,
               out=out, verbose=True)


def compare(models=PAIR, solver: str = "dpmpp-2m", schedule: str = "logsnr", steps: int = 20, n: int = 360,
            seeds: int = 3, threads: int = 1, repeats: int = 3, train_steps: int = 10, out=None) -> dict:
    from ... import zoo
    out = Path(out) if out else None
    with pinned_threads(threads):
        train = {m: train_cost(zoo.card(m)["card"]["preset"], train_steps) for m in models}
        res = sampling_rows(models, solver, schedule, steps, n, seeds, threads, repeats, out)
    rows = {r["model"]: r for r in res["rows"]}
    summary = []
    for m in models:
        r, card = rows[m], zoo.card(m)
        den = zoo.load(m)
        dec = decode_macs(den)
        summary.append({
            "model": m, "space": "latent" if dec else "pixel",
            "params": sum(p.numel() for p in den.net.parameters()),
            "autoencoder_params": sum(p.numel() for p in den.autoencoder.parameters()) if dec else 0,
            "eval_macs": (r["macs_per_sample"] - dec) / r["nfe"], "decode_macs": dec, "nfe": r["nfe"],
            "macs_per_sample": r["macs_per_sample"], "macs_per_step": r["macs_per_sample"] / r["nfe"],
            "ms_per_sample": r["ms_per_sample"], "ms_sd": r["ms_sd"],
            "fd": r["fd"], "fd_sd": r.get("fd_sd"), "fd_per_seed": r["fd_per_seed"], "class_acc": r.get("class_acc"),
            "mem_asymmetry": r["mem_asymmetry"], **train[m],
            "card_train_steps": card["card"]["steps"], "card_wall_time_s": card["card"]["wall_time_s"]})
    a, b = summary
    diff = [y - x for x, y in zip(a["fd_per_seed"], b["fd_per_seed"])]
    result = {"rows": summary, "solver": solver, "schedule": schedule, "steps": steps, "n": n,
              "seeds": res["seeds"], "real_vs_real": res["real_vs_real"], "machine": res["machine"],
              "fd_difference": {"of": f"{b['model']} - {a['model']}", "mean": mean_sd(diff)[0], "ci95": t_interval(diff)},
              "ratios": {"sampling_macs_per_step": a["macs_per_step"] / b["macs_per_step"],
                         "sampling_macs_per_sample": a["macs_per_sample"] / b["macs_per_sample"],
                         "ms_per_sample": a["ms_per_sample"] / b["ms_per_sample"],
                         "train_macs_per_sample": a["train_macs_per_sample"] / b["train_macs_per_sample"],
                         "train_s_per_step": a["s_per_step"] / b["s_per_step"],
                         "train_ms_per_sample": a["ms_per_train_sample"] / b["ms_per_train_sample"]}}
    result["table"] = table(result)
    if out is not None:
        from ...io import atomic_write
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "latent_compare.json", json.dumps(result, indent=1, default=str))
        atomic_write(out / "latent_compare.md", result["table"] + "\n")
    return result


@torch.no_grad()
def autoencoder_metrics(ae, dataset: str = "mnist", n: int = 1000, seeds=(0, 1, 2)) -> dict:
    """How much the first stage alone costs in quality: ``n`` class-balanced training images and
    their reconstructions ``decode(E[z|x])`` scored by ``metrics`` against held-out data on each seed
    (FD ± sd), beside the held-out reconstruction MSE. A latent model's samples cannot beat the
    reconstructions' FD by much: they are decoded by the same decoder."""
    from ...data import class_labels, dataset as load
    from ...latent.encode import reconstruction_error
    from ...metrics import evaluation
    from ..scoring import summarize
    ev = evaluation(dataset)
    rec, real = [], []
    for s in seeds:
        rx, ry = ev.real_sample(class_labels(n, ev.num_classes), n, torch.Generator().manual_seed(s))
        real.append(ev.quality(rx, ry))
        rec.append(ev.quality(ae.decode(ae.encode(rx)[0]), ry))
    r, q = summarize(rec, ("fd", "fd_pixel", "class_acc")), summarize(real, ("fd", "fd_pixel", "class_acc"))
    err = reconstruction_error(ae, load(dataset, "test")[0])
    out = {f"reconstruction_{k}": round(v, 4) for k, v in r.items()}
    out.update({f"real_{k}": round(v, 4) for k, v in q.items()})
    out["heldout_mse"], out["heldout_psnr_db"] = round(err["mse"], 6), round(err["psnr_db"], 2)
    out["reconstruction_summary"] = (f"{n} training images reconstructed: FD {pm(r['fd'], r['fd_sd'])} vs the same "
                                     f"images unreconstructed {pm(q['fd'], q['fd_sd'])} (held-out, seeds "
                                     f"{list(seeds)}); held-out MSE {err['mse']:.4f} ([-1, 1] scale), PSNR "
                                     f"{err['psnr_db']:.1f} dB; `python -m effdiff.bench.studies latent-compare --autoencoder-card NAME`")
    return out


def table(res: dict) -> str:
    k = len(res["seeds"])
    lines = [f"| model | space | params | train s/step (batch) | train MACs/sample | MACs/evaluation | "
             f"MACs/sample ({res['solver']} {res['steps']} steps, decode incl.) | ms/sample | FD held-out ({k} seeds) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        dec = f" (+{r['decode_macs'] / 1e6:.1f}M decode)" if r["decode_macs"] else ""
        lines.append(f"| {r['model']} | {r['space']} | {r['params'] / 1e6:.2f}M | {r['s_per_step']:.3f} ({r['batch_size']}) | "
                     f"{r['train_macs_per_sample'] / 1e6:.1f}M | {r['eval_macs'] / 1e6:.1f}M | "
                     f"{r['macs_per_sample'] / 1e6:.0f}M{dec} | {pm(r['ms_per_sample'], r['ms_sd'])} | "
                     f"{pm(r['fd'], r['fd_sd'])} |")
    q, d = res["ratios"], res["fd_difference"]
    ci = d["ci95"]
    ci_s = f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci[0] is not None else "(one seed)"
    rv = next(iter(res["real_vs_real"].values()))
    lines += ["", f"pixel / latent: sampling MACs per step (decode spread over the steps) {q['sampling_macs_per_step']:.2f}x, per sample "
                  f"{q['sampling_macs_per_sample']:.2f}x, ms per sample {q['ms_per_sample']:.2f}x; training MACs per "
                  f"sample {q['train_macs_per_sample']:.2f}x, s per step {q['train_s_per_step']:.2f}x, ms per training "
                  f"sample {q['train_ms_per_sample']:.2f}x",
              f"FD {d['of']}: {d['mean']:+.3f}, 95% CI {ci_s} (per seed, same seeds and labels); real vs real FD "
              f"{pm(rv['fd'], rv.get('fd_sd'))}",
              f"machine: {res['machine'].get('processor')}, {res['machine'].get('bench_threads')} thread(s), "
              f"torch {res['machine'].get('torch')}"]
    return "\n".join(lines)


@register("latent-compare")
def main(argv=None) -> None:
    """Latent vs pixel diffusion on MNIST: training cost, sampling MACs and time, FD (docs/latent.md)."""
    p = argparse.ArgumentParser(prog="latent-compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs=2, default=list(PAIR), metavar=("PIXEL", "LATENT"))
    p.add_argument("--solver", default="dpmpp-2m")
    p.add_argument("--schedule", default="logsnr")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--n", type=int, default=360)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--train-steps", type=int, default=10, help="timed optimizer steps per model")
    p.add_argument("--out", help="write latent_compare.json / .md (and the bench's results) here")
    p.add_argument("--autoencoder-card", metavar="NAME",
                   help="only score zoo autoencoder NAME's reconstructions and write them into its card")
    a = p.parse_args(argv)
    if a.autoencoder_card:
        from ... import zoo
        from ...training.presets import PRESETS
        from ..cards import update_card
        torch.set_num_threads(a.threads)
        ds = zoo.card(a.autoencoder_card)["card"]["preset"]
        m = autoencoder_metrics(zoo.load(a.autoencoder_card), PRESETS[ds].data if ds in PRESETS else "mnist")
        print(json.dumps(m, indent=1))
        update_card(a.autoencoder_card, m)
        return
    res = compare(tuple(a.models), a.solver, a.schedule, a.steps, a.n, a.seeds, a.threads, a.repeats,
                  a.train_steps, a.out)
    print()
    print(res["table"])


# ---- which latent network (docs/latent.md, "Choosing the latent network") --------------------
# Which latent DiT meets "≥ 4x cheaper than mnist-unet in measured time"? Times one training step
# (each preset's own Trainer, batch 64) and one batch-360 forward of the pixel `mnist-unet` and of
# DiT variants on the 7x7x4 latents, interleaved in rounds (median of 7 after 3 warm-up steps).
#
#     taskset -c 0 python -m effdiff.bench.studies latent-candidates      # alone on its core, 1 thread (~3 min)
#
# Ratios are pixel time / candidate time; the sampling ratio excludes the decoder (18.3M MACs once
# per sample, ~6% of a 20-step latent run). Results: docs/latent.md, "Choosing the latent network".

BASE = dict(patch_size=1, hidden_size=64, depth=6, num_heads=4, num_classes=10, in_channels=4, image_size=7)
CANDIDATES = {"depth 6, 4 heads, mlp 4 (first shipped)": {}, "depth 4": dict(depth=4),
              "depth 4, mlp 2": dict(depth=4, mlp_ratio=2.0), "depth 4, 2 heads": dict(depth=4, num_heads=2),
              "depth 6, 2 heads": dict(num_heads=2), "depth 5, 2 heads, mlp 2": dict(depth=5, num_heads=2, mlp_ratio=2.0),
              "depth 4, 2 heads, mlp 2": dict(depth=4, num_heads=2, mlp_ratio=2.0),
              "depth 6, 2 heads, mlp 2": dict(num_heads=2, mlp_ratio=2.0), "depth 5, 2 heads": dict(depth=5, num_heads=2)}


def _macs(net, x) -> float:
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(x, torch.rand(len(x)), torch.randint(0, 10, (len(x),)))
    return fc.get_total_flops() / 2 / len(x)


def _batch(model: dict, n: int = 360):
    """A random batch in a network config's input shape."""
    return torch.randn(n, model.get("in_channels", 1), model["image_size"], model["image_size"])


@register("latent-candidates")
def candidates(argv=None) -> None:
    """Which latent DiT is >= 4x cheaper than the pixel model in measured time (train step, batch-360 forward)?"""
    p = argparse.ArgumentParser(prog="latent-candidates", description=candidates.__doc__)
    p.add_argument("--rounds", type=int, default=7)
    rounds = p.parse_args(argv).rounds
    torch.set_num_threads(1)
    from ... import zoo
    from ...models.dit import DiT, DiTConfig
    from ...training import preset
    from ...training.trainer import trainer_class
    tmp = tempfile.mkdtemp()
    trainers, nets = {}, {}
    cfg = preset("mnist-unet", steps=100, ckpt_every=10 ** 6)
    trainers["mnist-unet"] = trainer_class(cfg)(cfg, f"{tmp}/pixel", progress=False)
    nets["mnist-unet"] = (zoo.load("mnist-unet").net, _batch(zoo.card("mnist-unet")["model"]))
    for i, (name, kw) in enumerate(CANDIDATES.items()):
        cfg = preset("mnist-ldm-dit", steps=100, ckpt_every=10 ** 6, model={**BASE, **kw})
        trainers[name] = trainer_class(cfg)(cfg, f"{tmp}/{i}", progress=False)
        nets[name] = (DiT(DiTConfig(**{**BASE, **kw})).eval(), _batch({**BASE, **kw}))
    for tr in trainers.values():
        for _ in range(3):
            tr.train_step()
    train = {k: [] for k in trainers}
    fwd = {k: [] for k in nets}
    for _ in range(rounds):
        for k, tr in trainers.items():
            t = time.perf_counter()
            tr.train_step()
            train[k].append(time.perf_counter() - t)
        for k, (net, x) in nets.items():
            with torch.no_grad():
                t_, y = torch.rand(len(x)), torch.randint(0, 10, (len(x),))
                t = time.perf_counter()
                net(x, t_, y)
                fwd[k].append(time.perf_counter() - t)
    tr_ms = {k: 1000 * statistics.median(v) for k, v in train.items()}
    fw_ms = {k: 1000 * statistics.median(v) for k, v in fwd.items()}
    print("| network | params | MACs/evaluation | train step (batch 64) | pixel / this | forward (batch 360) | pixel / this |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k, (net, x) in nets.items():
        p = sum(q.numel() for q in net.parameters()) / 1e6
        print(f"| {k} | {p:.2f}M | {_macs(net, x[:8]) / 1e6:.1f}M | {tr_ms[k]:.0f} ms | {tr_ms['mnist-unet'] / tr_ms[k]:.2f}x | "
              f"{fw_ms[k]:.0f} ms | {fw_ms['mnist-unet'] / fw_ms[k]:.2f}x |")

