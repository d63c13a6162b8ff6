"""Compression studies behind docs/compression.md: compress-suite rows on their own, the peak activation
memory of each row, depth pruning with output distillation, and the PTQ recipe selection. Every one
draws its noise in the model's own shape (``sampling.initial``)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from . import register

CALIBRATION_SEED = 12345        # the compress suite's calibration noise (never an evaluation seed)


def _setup(model: str, n: int, steps: int = 10, schedule: str = "uniform"):
    """(denoiser, σ grid, labels) of a zoo model for n class-balanced samples."""
    from ... import timesteps, zoo
    from ...data import class_labels
    den = zoo.load(model)
    return den, timesteps.get(schedule, steps, den.process), class_labels(n, den.cond_classes)


def calibration(den, sig, labels, solver: str = "ddim"):
    """The 32-sample calibration run the compress suite prepares techniques on."""
    from ... import techniques as T
    from ...sampling import initial
    return T.Run(initial(den, 32, sig, seed=CALIBRATION_SEED), sig, solver, None if labels is None else labels[:32])


@register("compress-rows")
def compress_rows(argv=None) -> None:
    """Some compress-suite rows beside the fp32 reference with the suite's protocol (DDIM 10, n=360, seeds 0-9,
    same noise, paired CI): how rows measured after the pre-registered suite were run."""
    from .. import compress as C
    from ..runner import run, table
    p = argparse.ArgumentParser(prog="compress-rows", description=compress_rows.__doc__)
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("labels", nargs="+", help=f"rows of the compress suite: {', '.join(C.ROWS)}")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    print(table(run(models=[a.model], suite_name="compress", configs=C.configs(a.model, a.labels), out=a.out,
                    threads=1, n_seeds=10)))


@register("compress-peaks")
def compress_peaks(argv=None) -> None:
    """Peak activation memory of one denoiser call on the 360-sample bench batch, per compress-suite row (each
    row prepared and applied as the suite does). Writes OUT/peaks-MODEL.json."""
    from ... import techniques as T
    from ... import timesteps, zoo
    from ...sampling import initial
    from .. import compress as C
    p = argparse.ArgumentParser(prog="compress-peaks", description=compress_peaks.__doc__)
    p.add_argument("model")
    p.add_argument("--out", default="bench-out/compress")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    den, sig, labels = _setup(a.model, 360)
    x = initial(den, 360, sig, seed=0)
    out = {"fp32": C.call_peak(den, x, sig, labels)}
    rows = {**C.ROWS, C.COMPOSED[0]: C.COMPOSED[1]}
    for label, parts in rows.items():
        den = zoo.load(a.model)
        if not all(T.get(n).applies_to(den) for n, _ in parts):
            continue
        solver = "dpmpp-2m" if label == C.COMPOSED[0] else "ddim"
        s2 = timesteps.get("logsnr" if solver == "dpmpp-2m" else "uniform", 10, den.process)
        h = C.Row(parts, solver, a.model).setup(den, s2, initial(den, 360, s2, seed=0), labels)
        try:
            out[label] = C.call_peak(den, x, sig, labels)
        finally:
            h.remove()
        print(label, out[label] / 1e6, flush=True)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / f"peaks-{a.model}.json").write_text(json.dumps(out, indent=1))


INJECT = (("dit", "digits-dit"), ("unet", "digits-unet"), ("svdquant-qat-dit", "digits-dit"),
          ("svdquant-qat-unet", "digits-unet"))


@register("compress-inject")
def compress_inject(argv=None) -> None:
    """Add the separately measured peak memory (compress-peaks) to compress-suite runs and re-render their
    compress.md with the suite's report (rows are not re-scored)."""
    from .. import compress as C
    p = argparse.ArgumentParser(prog="compress-inject", description=compress_inject.__doc__)
    p.add_argument("--runs", default="docs/bench/compress", help="folder of the suite runs (SUB/results.json)")
    p.add_argument("--peaks", default="bench-out/compress", help="folder of peaks-MODEL.json")
    a = p.parse_args(argv)
    for sub, model in INJECT:
        peaks = json.loads((Path(a.peaks) / f"peaks-{model}.json").read_text())
        path = Path(a.runs) / sub / "results.json"
        res = json.loads(path.read_text())
        for r in res["rows"]:
            label = r["config"].split("+", 1)[1] if "+" in r["config"] else None
            if label in peaks:
                r.setdefault("info", {})["peak_bytes"] = peaks[label]
                r["info"]["peak_bytes_source"] = "compress-peaks: one call on the 360-sample batch, measured after the run"
        res["report"] = C.report(res, path.parent)
        path.write_text(json.dumps(res, indent=1, default=str))
        print(res["report"])


def _selection_args(p: argparse.ArgumentParser, seeds: list[int], out: str) -> None:
    """--seeds (selection seeds, never the bench's), --n and --out of a selection study."""
    p.add_argument("--seeds", type=int, nargs="+", default=seeds)
    p.add_argument("--n", type=int, default=360)
    p.add_argument("--out", default=out)


def _fds(ev, den, sig, labels, seeds, solver: str = "ddim") -> list[float]:
    from ...sampling import initial, sample
    return [ev.score(sample(den, initial(den, len(labels), sig, seed=s, cond=labels), sig, solver, cond=labels),
                     labels, seed=s, real_vs_real=False)["fd"] for s in seeds]


@register("depth-kd")
def depth_kd(argv=None) -> None:
    """Depth pruning (40% of MACs) + an 800-step fine-tune, plain vs output distillation from the unpruned model;
    DDIM 10, n=360, selection seeds 100-102, FD paired against the unpruned model."""
    from ... import techniques as T
    from ... import zoo
    from ...metrics.evaluation import evaluation
    from ...prune import DepthPruningConfig, finetune
    from ..scoring import dataset_of, paired_change, pct_ci
    p = argparse.ArgumentParser(prog="depth-kd", description=depth_kd.__doc__)
    p.add_argument("--model", default="digits-dit")
    _selection_args(p, [100, 101, 102], "bench-out/compress")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    teacher, sig, labels = _setup(a.model, a.n)
    ev = evaluation(dataset_of(teacher))
    ref = _fds(ev, teacher, sig, labels, a.seeds)
    out = {"fp32": ref}
    print(a.model, "fp32", [round(f, 3) for f in ref], flush=True)
    for name, kw in (("plain", {}), ("kd0.5", {"teacher": teacher, "distill": 0.5}),
                     ("kd1.0", {"teacher": teacher, "distill": 1.0})):
        den = zoo.load(a.model)
        t = T.get("depth-pruning")
        h = t.apply(den, t.prepare(den, DepthPruningConfig(drop=0.4), calibration(den, sig, labels)))
        t0 = time.time()
        finetune(den, steps=800, **kw)
        f = _fds(ev, den, sig, labels, a.seeds)
        ch, ci = paired_change(f, ref)
        out[name] = {"fd": f, "change": ch, "ci": ci, "finetune_s": round(time.time() - t0, 1), "stats": h.stats.as_dict()}
        print(a.model, name, [round(x, 3) for x in f], pct_ci(ch, ci), f"{time.time() - t0:.0f}s", flush=True)
        h.remove()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / f"depth_kd-{a.model}.json").write_text(json.dumps(out, indent=1, default=str))


def ptq_variants() -> dict:
    """The W4A8 / W8A8 PTQ variants tried (rows of the selection tables in docs/compression.md)."""
    from ...quant import NaivePTQConfig, PTQConfig
    fl = ("input_blocks.0.0", "out.2")
    return {
        "ptq-W4A8-wminmax": ("ptq", PTQConfig(4, 8, w_observer="minmax")),
        "ptq-W4A8-fl8+ptqd": ("ptq", PTQConfig(4, 8, exclude=fl, ptqd=True)),
        "fl+ada100+ptqd": ("ptq", PTQConfig(4, 8, adaround_iters=100, ptqd=True)),
        "fl+ada300+ptqd": ("ptq", PTQConfig(4, 8, adaround_iters=300, ptqd=True)),
        "fl+ptqd+mixed10": ("ptq", PTQConfig(4, 8, ptqd=True, mixed_fraction=0.1)),
        "W8A8": ("ptq", PTQConfig(8, 8)),
        "W8A8-nostep": ("ptq", PTQConfig(8, 8, per_step=False)),
        "W8A8+ptqd": ("ptq", PTQConfig(8, 8, ptqd=True)),
        "naive-W4A8": ("ptq-naive", NaivePTQConfig(4, 8)),
        "ptq-W4A8": ("ptq", PTQConfig(4, 8)),
        "ptq-W4A8-nostep": ("ptq", PTQConfig(4, 8, per_step=False)),
        "ptq-W4A8+ptqd": ("ptq", PTQConfig(4, 8, ptqd=True)),
        "ptq-W4A8-g8": ("ptq", PTQConfig(4, 8, w_granularity="group", group_size=8)),
        "ptq-W4A8-ada": ("ptq", PTQConfig(4, 8, adaround_iters=100)),
        "ptq-W4A8-g8+ptqd": ("ptq", PTQConfig(4, 8, w_granularity="group", group_size=8, ptqd=True)),
    }


@register("select-ptq")
def select_ptq(argv=None) -> None:
    """Select the PTQ recipe on selection seeds 100-101 (never the bench's): sample MSE to fp32 and paired FD
    change, DDIM 10, n=360; calibration as in the compress suite."""
    from ... import techniques as T
    from ...metrics.evaluation import evaluation
    from ...sampling import initial, sample
    from ..scoring import dataset_of
    variants = ptq_variants()
    p = argparse.ArgumentParser(prog="select-ptq", description=select_ptq.__doc__)
    p.add_argument("model")
    p.add_argument("variants", nargs="?", help=f"comma-separated, default all: {', '.join(variants)}")
    _selection_args(p, [100, 101], ".")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    den, sig, labels = _setup(a.model, a.n)
    ev = evaluation(dataset_of(den))

    def gen(d, seed):
        return sample(d, initial(den, a.n, sig, seed=seed, cond=labels), sig, "ddim", cond=labels)

    ref = {s: gen(den, s) for s in a.seeds}
    fd_ref = {s: ev.score(ref[s], labels, seed=s, real_vs_real=False)["fd"] for s in a.seeds}
    print(a.model, "fp32 FD", fd_ref, flush=True)
    run, out = calibration(den, sig, labels), {}
    for name in (a.variants.split(",") if a.variants else list(variants)):
        tech, cfg = variants[name]
        t0 = time.time()
        cfg = T.get(tech).prepare(den, cfg, run)
        prep = time.time() - t0
        with T.get(tech).apply(den, cfg):
            xs = {s: gen(den, s) for s in a.seeds}
        mse = sum(float(((xs[s] - ref[s]) ** 2).mean()) for s in a.seeds) / len(a.seeds)
        ch = [ev.score(xs[s], labels, seed=s, real_vs_real=False)["fd"] / fd_ref[s] - 1 for s in a.seeds]
        out[name] = {"mse": mse, "fd_change": ch, "prep_s": prep}
        print(f"{a.model} {name:20s} mse={mse:.5f} dFD={[round(100 * c, 1) for c in ch]}% prep={prep:.0f}s", flush=True)
    (Path(a.out) / f"select_ptq-{a.model}.json").write_text(json.dumps(out, indent=1))
