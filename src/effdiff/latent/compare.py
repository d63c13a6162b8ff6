"""Latent vs pixel diffusion on MNIST: training cost per step, sampling MACs and ms per sample (the
latent model's decode included, once per sample) and FD against held-out data, same solver and steps.

    taskset -c 0 python -m effdiff.latent.compare --out bench-latent       # the timed comparison

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
from pathlib import Path

import torch

from ..bench.config import BenchConfig
from ..bench.scoring import mean_sd, pm, t_interval
from ..bench.timing import timed
from ..metrics import pinned_threads
from torch.utils.flop_counter import FlopCounterMode
from .denoiser import decode_macs

PAIR = ("mnist-unet", "mnist-ldm-dit")


def train_cost(preset_name: str, steps: int = 10, warmup: int = 3) -> dict:
    """Median seconds per optimizer step of ``preset_name``'s Trainer (its batch size), and MACs per
    training sample (forward + backward of the loss)."""
    from ..training import preset
    from ..training.trainer import trainer_class
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
    from ..bench.runner import run
    configs = [BenchConfig(m, f"{solver}-{steps}", solver, schedule, steps, reference=True) for m in models]
    return run(models=list(models), configs=configs, n_samples=n, n_seeds=seeds, repeats=repeats, threads=threads,
               out=out, verbose=True)


def compare(models=PAIR, solver: str = "dpmpp-2m", schedule: str = "logsnr", steps: int = 20, n: int = 360,
            seeds: int = 3, threads: int = 1, repeats: int = 3, train_steps: int = 10, out=None) -> dict:
    from .. import zoo
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
        from ..io import atomic_write
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
    from ..bench.scoring import labels_for, summarize
    from ..data import dataset as load
    from ..metrics import evaluation
    from .encode import reconstruction_error
    ev = evaluation(dataset)
    rec, real = [], []
    for s in seeds:
        rx, ry = ev.real_sample(labels_for(n, ev.num_classes), n, torch.Generator().manual_seed(s))
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
                                     f"{err['psnr_db']:.1f} dB; `python -m effdiff.latent.compare --autoencoder-card NAME`")
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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m effdiff.latent.compare", description=__doc__.split("\n\n")[0])
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
        from .. import zoo
        from ..bench.cards import update_card
        torch.set_num_threads(a.threads)
        ds = zoo.card(a.autoencoder_card)["card"]["preset"]
        from ..training.presets import PRESETS
        m = autoencoder_metrics(zoo.load(a.autoencoder_card), PRESETS[ds].data if ds in PRESETS else "mnist")
        print(json.dumps(m, indent=1))
        update_card(a.autoencoder_card, m)
        return
    res = compare(tuple(a.models), a.solver, a.schedule, a.steps, a.n, a.seeds, a.threads, a.repeats,
                  a.train_steps, a.out)
    print()
    print(res["table"])


if __name__ == "__main__":
    main()
