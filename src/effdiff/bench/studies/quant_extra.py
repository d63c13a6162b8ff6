"""W4A8 beyond PTQ: SVDQuant and EfficientDM-style LoRA QAT against timestep-aware PTQ and fp32, with
the same noise (issue 11, items 3 and 4).

    taskset -c 1 python -m effdiff.bench.studies quant-extra --out bench-out/quant

Per model (digits-unet, digits-dit): DDIM 10 steps (uniform schedule), n samples per seed, noise seeds
0, 1, 2, labels i % 10; FD against held-out digits (``ed.metrics.score``), paired change vs fp32
with a 95% t-interval over the seeds. Rows: fp32, ``ptq`` PTQConfig(4, 8), ``svdquant``
SVDQuantConfig() (W4A8, rank 8, α 0.5, groups of 32, bf16 factors), ``qat`` QATConfig(4, 8, steps).
Every row is prepared on 32 samples of other noise (seed 12345; QAT distils on 64 fp trajectories
from that noise and fresh noise), the same calibration the compress suite uses. Also: preparation
seconds, sample MSE to the fp32 samples of the same noise, the handle's byte stats. Writes
<out>/<model>.json after every row (a rerun skips the rows already there) and prints a table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from ... import techniques as T
from ... import timesteps, zoo
from ...data import class_labels
from ...io import atomic_write
from ...metrics import score
from ...quant.ptq import PTQConfig
from ...quant.qat import QATConfig
from ...quant.svdquant import SVDQuantConfig
from ...sampling import initial, sample
from ..scoring import dataset_of, mean_sd, paired_change, pct_ci, pm
from . import register
from .compress import calibration


def rows(qat_steps: int) -> dict:
    return {"ptq-W4A8": ("ptq", PTQConfig(4, 8)),
            "svdquant-W4A8": ("svdquant", SVDQuantConfig(w_bits=4, a_bits=8)),
            f"qat-W4A8-{qat_steps}": ("qat", QATConfig(w_bits=4, a_bits=8, steps=qat_steps))}


def generate(den, sig, n: int, seed: int):
    labels = class_labels(n, den.cond_classes)
    with torch.no_grad():
        return sample(den, initial(den, n, sig, seed=seed, cond=labels), sig, "ddim", cond=labels), labels


def evaluate(den, sig, n: int, seeds: list[int], ref: dict | None) -> tuple[dict, dict]:
    out, samples = {"fd": [], "mse_to_fp32": [], "seconds": 0.0}, {}
    t0 = time.perf_counter()
    for s in seeds:
        x, labels = generate(den, sig, n, s)
        samples[s] = x
        out["fd"].append(float(score(x, labels, dataset=dataset_of(den), seed=s)["fd"]))
        if ref is not None:
            out["mse_to_fp32"].append(float((x - ref[s]).pow(2).mean()))
    out["seconds"] = time.perf_counter() - t0
    return out, samples


def describe(cfg) -> dict:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in ("state", "ptq")}


@register("quant-extra")
def main(argv=None):
    """W4A8 beyond PTQ: SVDQuant and LoRA QAT against timestep-aware PTQ and fp32, with the same noise."""
    ap = argparse.ArgumentParser(prog="quant-extra", description=__doc__)
    ap.add_argument("--models", nargs="+", default=["digits-unet", "digits-dit"])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--qat-steps", type=int, default=200)
    ap.add_argument("--out", default="bench-out/quant")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for model in a.models:
        path = out / f"{model}.json"
        res = json.loads(path.read_text()) if path.exists() else {}
        res.update({"model": model, "solver": "ddim", "steps": 10, "n": a.n, "seeds": a.seeds, "threads": 1,
                    "machine": "2-core AMD EPYC, torch " + torch.__version__ + ", core 1 shared with other jobs"})
        res.setdefault("rows", {})
        den = zoo.load(model)
        sig = timesteps.get("uniform", 10, den.process)
        run = calibration(den, sig, class_labels(32, den.cond_classes))
        fp, ref = evaluate(den, sig, a.n, a.seeds, None)
        res["rows"]["fp32"] = fp
        for label, (name, cfg) in rows(a.qat_steps).items():
            if label in res["rows"]:
                continue
            t = T.get(name)
            t0 = time.perf_counter()
            prepared = t.prepare(den, cfg, run)
            prep = time.perf_counter() - t0
            with t.apply(den, prepared) as h:
                row, _ = evaluate(den, sig, a.n, a.seeds, ref)
            row.update({"technique": name, "config": {k: repr(v) for k, v in describe(cfg).items()},
                        "prepare_seconds": prep, "stats": h.stats.as_dict()})
            if name == "qat":
                hist = prepared.state["history"]
                row["qat"] = {k: hist[k] for k in ("start", "end", "seconds", "lora_layers", "pairs")}
                row["qat"]["loss_first_last_20"] = [sum(hist["losses"][:20]) / 20, sum(hist["losses"][-20:]) / 20]
            res["rows"][label] = row
            atomic_write(path, json.dumps(res, indent=1))
            print(f"{model} {label}: prepared in {prep:.0f} s", flush=True)
        base = res["rows"]["fp32"]["fd"]
        for label, row in res["rows"].items():
            if label != "fp32":
                row["fd_change"], row["fd_change_ci"] = paired_change(row["fd"], base)
        atomic_write(path, json.dumps(res, indent=1))
        print(f"\n{model}: DDIM 10, n = {a.n}, seeds {a.seeds}")
        print("| row | FD | change vs fp32 (95% CI) | sample MSE to fp32 | packed / fp32 bytes | prepare s |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, row in res["rows"].items():
            fd = pm(*mean_sd(row["fd"]))
            if label == "fp32":
                print(f"| fp32 | {fd} | | | | |")
                continue
            st = row["stats"]
            print(f"| {label} | {fd} | {pct_ci(row['fd_change'], row['fd_change_ci'])} | "
                  f"{mean_sd(row['mse_to_fp32'])[0]:.4f} | {st['packed_bytes']} / {st['fp32_bytes']} "
                  f"({st['compression']:.1f}x) | {row['prepare_seconds']:.0f} |", flush=True)

