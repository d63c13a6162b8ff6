"""Checks of the evaluation protocol itself, on real data only (no model), over several seeds:

- copier vs real held-out data: against one class-balanced half of the held-out split, score
  (a) training images copied verbatim, (b) the same copies plus N(0, 0.1^2) pixel noise and
  (c) the other, real held-out half. A trustworthy headline FD does not prefer (a) to (c); the
  memorization score separates all three.
- direction: FD(train subset -> held-out) against FD(held-out subset -> train subset) in the
  evaluation network's features; a network trained on neither split treats them alike.

    python -m effdiff.bench.protocol digits        # prints the numbers docs/evaluation.md quotes
"""
from __future__ import annotations

import argparse
import json

import torch

from .. import data, zoo
from ..metrics import Evaluation, class_features, frechet_distance
from ..metrics.evaluation import balanced_sample
from ..metrics.reference import eval_net_name
from .scoring import mean_sd

NOISE = 0.1


def halves(y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-balanced random halves (a, b) of the indices of y."""
    a = balanced_sample(y, torch.bincount(y) // 2, torch.Generator().manual_seed(seed))
    rest = torch.ones(len(y), dtype=torch.bool)
    rest[a] = False
    return a, rest.nonzero().flatten()


def copier_check(dataset: str = "digits", seeds=range(5), net=None) -> dict:
    """Per seed, scores of {"copier", "noisy_copier", "held_out"} against a held-out half."""
    xtr, ytr = data.dataset(dataset, "train")
    xte, yte = data.dataset(dataset, "test")
    net = net if net is not None else zoo.load(eval_net_name(dataset))
    out = {"copier": [], "noisy_copier": [], "held_out": []}
    for s in seeds:
        a, b = halves(yte, s)
        ev = Evaluation(dataset, net=net, reference=(xte[a], yte[a]))
        c = balanced_sample(ytr, torch.bincount(yte[b], minlength=10), torch.Generator().manual_seed(50 + s))
        noisy = xtr[c] + NOISE * torch.randn(xtr[c].shape, generator=torch.Generator().manual_seed(s))
        out["copier"].append(ev.score(xtr[c], ytr[c], seed=s, real_vs_real=False))
        out["noisy_copier"].append(ev.score(noisy, ytr[c], seed=s, real_vs_real=False))
        out["held_out"].append(ev.score(xte[b], yte[b], seed=s, real_vs_real=False))
    return out


def direction_check(dataset: str = "digits", seeds=range(8), net=None) -> tuple[list[float], list[float]]:
    """(FD of half-size train subsets vs the held-out split, FD of held-out halves vs equal-size train subsets)."""
    xtr, ytr = data.dataset(dataset, "train")
    xte, yte = data.dataset(dataset, "test")
    net = net if net is not None else zoo.load(eval_net_name(dataset))
    f_tr, f_te = class_features(net, xtr)[0], class_features(net, xte)[0]
    half, full = torch.bincount(yte) // 2, torch.bincount(yte)
    fwd, back = [], []
    for s in seeds:
        g = torch.Generator().manual_seed(100 + s)
        i, j, r = balanced_sample(ytr, half, g), balanced_sample(yte, half, g), balanced_sample(ytr, full, g)
        fwd.append(frechet_distance(f_tr[i], f_te))
        back.append(frechet_distance(f_te[j], f_tr[r]))
    return fwd, back


def summary(dataset: str = "digits", net_name: str | None = None) -> dict:
    """Mean ± sd over seeds of the numbers both checks produce."""
    net = zoo.load(net_name) if net_name else None
    keys = ("fd", "fd_pixel", "class_acc", "mem_asymmetry", "mem_copy_fraction", "mem_closer_than_p5")
    cc = copier_check(dataset, net=net)
    out = {k: {m: [round(v, 4) for v in mean_sd([q[m] for q in qs])] for m in keys} for k, qs in cc.items()}
    fwd, back = direction_check(dataset, net=net)
    out["direction"] = {"train_to_heldout": [round(v, 4) for v in mean_sd(fwd)],
                        "heldout_to_train": [round(v, 4) for v in mean_sd(back)]}
    out["net"] = net_name or eval_net_name(dataset)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m effdiff.bench.protocol")
    p.add_argument("dataset", choices=["digits", "mnist"])
    p.add_argument("--net", help="another zoo feature network (e.g. digits-classifier, trained on the train split)")
    p.add_argument("--out", help="also write the numbers, with the code's provenance, to this JSON file "
                   "(docs/evaluation.md's table is generated from docs/bench/protocol/*.json)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    res = summary(a.dataset, a.net)
    print(json.dumps(res, indent=1))
    if a.out:
        from ..io import atomic_write
        from .provenance import provenance
        cmd = f"python -m effdiff.bench.protocol {a.dataset}" + (f" --net {a.net}" if a.net else "")
        atomic_write(a.out, json.dumps({**res, "command": cmd, "provenance": provenance()}, indent=1))


if __name__ == "__main__":
    main()
