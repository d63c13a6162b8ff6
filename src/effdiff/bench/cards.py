"""Zoo card metrics from `metrics.score`: FD ± sd against held-out data over seeds, the real-vs-real
comparison point at the same n and the memorization score, for one sampler.

    python -m effdiff.bench.cards mnist-unet --export runs/mnist-unet/model      # install + card
    python -m effdiff.bench.cards digits-unet                                     # print only
    python -m effdiff.bench.cards digits-unet --update     # rewrite the shipped card's metrics
"""
from __future__ import annotations

import argparse
import json

import torch

from .. import zoo
from ..metrics import evaluation
from ..recipes import sample_model
from .scoring import REAL_METRICS, ROW_METRICS, dataset_of, labels_for, pm, summarize


def card_metrics(den, solver: str = "dpmpp-2m", schedule: str = "logsnr", steps: int = 20, n: int | None = None,
                 seeds=(0, 1, 2)) -> dict:
    """Score `solver`/`schedule`/`steps` samples of `den` on each seed; means, sds and the comparison point."""
    ds = dataset_of(den)
    ev = evaluation(ds)
    n = n or len(ev.ref_x)
    labels = labels_for(n, den.cond_classes)
    qs, real = [], []
    for s in seeds:
        x = sample_model(den, n, solver, schedule, steps, seed=s, cond=labels, own_grid=False).result.x
        q = ev.score(x, labels, seed=s)
        qs.append(q)
        real.append({k[len("real_vs_real_"):]: v for k, v in q.items() if k.startswith("real_vs_real_")})
    stats = summarize(qs, ROW_METRICS)
    rv = summarize(real, REAL_METRICS)
    tag = f"{solver}_{schedule}_{steps}"
    out = {f"{k}_{tag}": round(v, 4) for k, v in stats.items()}
    out.update({f"real_vs_real_{k}": round(v, 4) for k, v in rv.items()})
    out["metrics_protocol"] = (f"effdiff.metrics.score(dataset={ds!r}): {n} class-balanced samples per seed, "
                               f"seeds {list(seeds)}, against the held-out split; real_vs_real = {n} training images "
                               "scored the same way; `python -m effdiff.bench.cards NAME`")
    out["fd_summary"] = (f"FD {pm(stats['fd'], stats['fd_sd'])} ({tag}) vs real-vs-real {pm(rv['fd'], rv['fd_sd'])}; "
                         f"memorization NN-distance ratio {stats['mem_asymmetry']:.3f} (real data "
                         f"{stats['mem_asymmetry_real']:.3f}), copies {stats['mem_copy_fraction']:.3f}")
    return out


STALE = ("fd_floor", "fd_ddpm", "fd_dpmpp", "class_acc_ddpm", "class_acc_dpmpp",   # the old protocol's keys
         "fd_euler", "class_acc_euler")


def update_card(name: str, metrics: dict) -> None:
    """Replace the old protocol's metrics of a shipped model's card (JSON and Markdown), keeping the rest."""
    path = zoo.WEIGHTS / f"{name}.json"
    meta = json.loads(path.read_text())
    old = meta["card"]["metrics"]
    meta["card"]["metrics"] = {**{k: v for k, v in old.items() if not k.startswith(STALE) and k != "metrics_command"},
                               **metrics}
    path.write_text(json.dumps(meta, indent=1, sort_keys=True))
    (zoo.WEIGHTS / f"{name}.md").write_text(zoo.card_markdown(name, meta))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m effdiff.bench.cards")
    p.add_argument("name", help="zoo name (scored as shipped, or as --export once installed)")
    p.add_argument("--export", help="an exported run (DIR/model) to install into the zoo under NAME with the metrics")
    p.add_argument("--solver", default="dpmpp-2m")
    p.add_argument("--schedule", default="logsnr")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--n", type=int)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int)
    p.add_argument("--update", action="store_true", help="write the metrics into the shipped card of NAME")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    den = zoo.from_checkpoint(a.export) if a.export else zoo.load(a.name)
    metrics = card_metrics(den, a.solver, a.schedule, a.steps, a.n, tuple(range(a.seeds)))
    print(json.dumps(metrics, indent=1))
    if a.export:
        print("installed", zoo.install(a.export, a.name, extra_metrics=metrics))
    elif a.update:
        update_card(a.name, metrics)
        print("updated", zoo.WEIGHTS / f"{a.name}.json")


if __name__ == "__main__":
    main()
