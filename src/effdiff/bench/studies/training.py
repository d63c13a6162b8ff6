"""Training studies: the cost of noise-assignment couplings, OT-CFM on a toy, an end-to-end PriorGrad
check, and the per-step cost of every training trick (docs/training.md)."""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from . import register


def _out(path: str) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


@register("assign-time")
def assign_time(argv=None) -> None:
    """Wall time of OT / immiscible noise assignment (cost matrix + solve) on digits and MNIST batches."""
    from ...data import dataset
    from ...training.coupling import assignment, cost_matrix
    argparse.ArgumentParser(prog="assign-time", description=assign_time.__doc__).parse_args(argv)
    torch.set_num_threads(1)
    for name, data in (("digits 8x8", dataset("digits", "train")[0]), ("mnist 28x28", dataset("mnist", "train")[0])):
        for n in (128, 1024):
            for kind in ("ot", "immiscible"):
                g = torch.Generator().manual_seed(0)
                ts, tc, ratio = [], [], []
                for _ in range(5 if n == 1024 else 20):
                    x = data[torch.randint(0, len(data), (n,), generator=g)]
                    eps = torch.randn(x.shape, generator=g)
                    t0 = time.perf_counter()
                    c = cost_matrix(x, eps, kind)
                    t1 = time.perf_counter()
                    p = assignment(x, eps, kind)
                    ts.append(time.perf_counter() - t1)
                    tc.append(t1 - t0)
                    ratio.append(float(c[torch.arange(n), p].mean() / c.diagonal().mean()))
                print(f"{name:12s} B={n:5d} {kind:10s} assignment (cost+solve) median {1e3 * statistics.median(ts):8.1f} ms"
                      f"  (cost matrix alone {1e3 * statistics.median(tc):6.1f} ms)  mean pair cost / random "
                      f"{statistics.mean(ratio):.3f}")


@register("ot-toy")
def ot_toy(argv=None) -> None:
    """OT-CFM vs independent coupling on the 8-Gaussian toy: sliced W2 after 1/2/4/16 Euler steps, 3 seeds."""
    from ... import data
    from ...metrics.toy import sliced_wasserstein
    from ...sampling import randn, sample
    from ...training import Trainer, preset
    p = argparse.ArgumentParser(prog="ot-toy", description=ot_toy.__doc__)
    p.add_argument("--out", default="bench-out")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    toy = data.toy("gmm")
    ref = toy.sample(4000, generator=torch.Generator().manual_seed(123)).float()
    res: dict[str, list] = {}
    for coupling in ("none", "ot"):
        for seed in (0, 1, 2):
            cfg = preset("toy2d", process={"name": "flow"}, prediction="velocity", steps=3000, batch_size=256,
                         loss={"density": "lognormal", "density_args": {"p_mean": 0.0, "p_std": 1.0}},
                         coupling=coupling, seed=seed, ckpt_every=3000)
            den = Trainer(cfg, tempfile.mkdtemp(), progress=False).run().ema_denoiser().eval()
            for n in (1, 2, 4, 16):
                t = torch.linspace(0.999, 0, n + 1, dtype=torch.float64)
                sig = (t / (1 - t)).float()
                with torch.no_grad():
                    out = sample(den, randn((4000, 2), seed=1000 + seed) * sig[0], sig, solver="euler")
                res.setdefault(f"{coupling} euler-{n}", []).append(
                    sliced_wasserstein(out, ref, generator=torch.Generator().manual_seed(0)))
            print(coupling, seed, {k: round(v[-1], 4) for k, v in res.items() if k.startswith(coupling)}, flush=True)
    summary = {k: (statistics.mean(v), statistics.stdev(v)) for k, v in res.items()}
    for k, (m, s) in summary.items():
        print(f"{k:16s} SW2 {m:.4f} ± {s:.4f}")
    (_out(a.out) / "ot_toy.json").write_text(json.dumps({"runs": res, "summary": summary}, indent=1))


@register("priorgrad-check")
def priorgrad_check(argv=None) -> None:
    """PriorGrad end to end: a preset trained with and without prior="priorgrad", exported, loaded, scored."""
    from ... import checkpoint, kinds, timesteps
    from ...data import class_labels
    from ...metrics import score
    from ...sampling import initial, sample
    from ...training import Trainer, preset
    p = argparse.ArgumentParser(prog="priorgrad-check", description=priorgrad_check.__doc__)
    p.add_argument("--preset", default="digits-unet")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--out", default="bench-out")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    out, result = _out(a.out), {}
    for name, opts in (("baseline", {}), ("priorgrad", {"prior": "priorgrad"})):
        d = out / f"pg-{name}-{a.steps}"
        tr = Trainer(preset(a.preset, steps=a.steps, batch_size=64, ckpt_every=100, **opts), d, progress=False)
        tr.run(resume=(d / "checkpoint.json").exists())
        stem = tr.export()
        den = kinds.from_checkpoint(stem)                     # the kind its metadata names (prior or plain)
        meta = checkpoint.load(stem)[1]
        sig = timesteps.karras(20, sigma_min=0.002, sigma_max=80.0)
        labels = class_labels(a.n, den.cond_classes)
        scores = []
        for seed in (0, 1, 2):
            with torch.no_grad():
                x = sample(den, initial(den, a.n, sig, seed=seed, cond=labels), sig, solver="dpmpp-2m",
                           cond=labels).clamp(-1, 1)
            s = score(x, labels, dataset=meta.get("data") or "digits", seed=seed)
            scores.append({k: s[k] for k in ("fd", "fd_pixel") if k in s})
        result[name] = {"steps": a.steps, "wall_s": round(tr.elapsed, 1), "scores": scores}
        print(name, json.dumps(result[name]), flush=True)
    (out / f"priorgrad_check_{a.steps}.json").write_text(json.dumps(result, indent=1))


TRICKS = {"baseline": {}, "min-snr": {"loss_over": {"weighting": "min-snr", "gamma": 5.0}}, "ot": {"coupling": "ot"},
          "immiscible": {"coupling": "immiscible"}, "ema-power": {"ema": {"kind": "power", "sigma_rel": 0.05}},
          "priorgrad": {"prior": "priorgrad"},
          "repa": {"repa": {"encoder": "digits-classifier", "weight": 0.5, "layer": 2}}, "ssm": "ssm"}


def _trick(base, opts) -> dict:
    if opts == "ssm":
        return dict(prediction="score", process={"name": "vp", "schedule": "linear", "discrete": False},
                    loss={"kind": "ssm"})
    if "loss_over" in opts:
        return dict(loss={**base.loss, **opts["loss_over"]})
    return opts


@register("step-cost")
def step_cost(argv=None) -> None:
    """Per-step wall time of each training trick on the digits presets (median of 15 steps, one thread)."""
    from ...training import Trainer, preset
    p = argparse.ArgumentParser(prog="step-cost", description=step_cost.__doc__)
    p.add_argument("--presets", nargs="+", default=["digits-unet", "digits-dit"])
    p.add_argument("--out", default="bench-out")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    res = {}
    for model in a.presets:
        for name, opts in TRICKS.items():
            tr = Trainer(preset(model, steps=1000, ckpt_every=1000, **_trick(preset(model), opts)), tempfile.mkdtemp(),
                         progress=False)
            ts = []
            for _ in range(18):
                t0 = time.perf_counter()
                tr.train_step()
                ts.append(time.perf_counter() - t0)
            res[f"{model} {name}"] = statistics.median(ts[3:])
            print(f"{model:12s} {name:11s} {1e3 * res[f'{model} {name}']:7.1f} ms/step", flush=True)
    (_out(a.out) / "step_cost.json").write_text(json.dumps(res, indent=1))
