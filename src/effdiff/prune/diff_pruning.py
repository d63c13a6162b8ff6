"""Diff-Pruning as a Technique (Fang, Ma & Wang 2023): Taylor importance over the informative early
timesteps (importance.py), structured width pruning on the dependency graph (channels.py), a short
fine-tune with the project's denoising loss, and save / load of the pruned model (io.py).

    t = techniques.get("diff-pruning")
    cfg = t.prepare(den, DiffPruningConfig(ratio=0.5), techniques.Run(x, sigmas))   # fills keep
    with t.apply(den, cfg):                   # the pruned network, in place; remove() undoes it
        finetune(den, steps=400); save_pruned(den, "out/digits-unet-pruned")
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from ..hooks import Handle, Stats
from ..sites import network
from ..techniques import Run, Technique, register
from .channels import choose, groups, parts, restore, shrink
from .importance import taylor_gradients


@dataclass
class DiffPruningConfig:
    """``ratio``: share of each private width removed; ``thr``: Diff-Pruning's loss threshold;
    ``stride``: every stride-th discrete timestep is used (CPU budget); ``num_samples``: training
    images for the gradients; ``keep``: block -> kept indices, filled by ``prepare``."""
    ratio: float = 0.5
    thr: float = 0.05
    stride: int = 10
    num_samples: int = 64
    keep: dict | None = field(default=None, repr=False)

    def __post_init__(self):
        if not 0 <= self.ratio < 1:
            raise ValueError(f"ratio must lie in [0, 1), got {self.ratio}")


@dataclass
class PruneStats(Stats):
    """Parameters before / after and blocks pruned."""
    params_before: int = 0
    params_after: int = 0
    blocks: int = 0


def training_batch(denoiser, n: int, seed: int = 0):
    """n class-balanced-ish training images and labels of the model's dataset."""
    from .. import data
    size = denoiser.meta["model"]["image_size"] if hasattr(denoiser, "meta") else 8
    x, y = data.dataset("digits" if size == 8 else "mnist", "train")
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], (y[idx] if getattr(denoiser, "cond_classes", 0) else None)


@torch.no_grad()
def own_samples(denoiser, n: int, run: Run, seed: int = 0):
    """``n`` samples of the model itself by ``run``'s sampler (its σ schedule, solver and labels, cycled), from
    noise of seed ``seed``: the calibration data of a model whose training data effdiff does not know."""
    from ..sampling import randn, sample
    cond = None if run.cond is None else torch.as_tensor(run.cond).repeat((n + len(run.cond) - 1) // len(run.cond))[:n]
    sigmas = torch.as_tensor(run.sigmas)
    x = randn((n, *run.x.shape[1:]), seed=seed) * sigmas[0].float()
    return sample(run.denoiser or denoiser, x, sigmas, run.solver, cond=cond, seed=seed).float(), cond


def calibration_batch(denoiser, n: int, run: Run | None = None, seed: int = 0):
    """Diff-Pruning's data: ``n`` training images of the model's dataset (``training_batch``), or, when ``run``
    samples another shape (a video clip, a latent), ``n`` of the model's own samples (``own_samples``)."""
    x0, y = training_batch(denoiser, n, seed)
    if run is not None and tuple(run.x.shape[1:]) != tuple(x0.shape[1:]):
        return own_samples(denoiser, n, run, seed)
    return x0, y


def prepare_diff_pruning(denoiser, config: DiffPruningConfig, run: Run | None = None, **_) -> DiffPruningConfig:
    """Accumulate Taylor importance on training data (``calibration_batch``) and choose the kept channels of every
    group."""
    x0, y = calibration_batch(denoiser, config.num_samples, run)
    info = taylor_gradients(denoiser, x0, y, config.thr, config.stride)
    keep = {g.name: choose(g, config.ratio) for g in groups(network(denoiser))}
    network(denoiser).zero_grad(set_to_none=True)
    return dataclasses.replace(config, keep={**keep, "_timesteps": info["timesteps"]})


def apply_diff_pruning(denoiser, config: DiffPruningConfig) -> Handle:
    """Prune ``denoiser``'s network in place to ``config.keep``; the handle restores the original layers."""
    net = network(denoiser)
    mods = dict(net.named_modules())
    before = sum(p.numel() for p in net.parameters())
    saved = []
    for name, keep in config.keep.items():
        if name.startswith("_"):
            continue
        saved.append((mods[name], parts(mods[name])))
        shrink(mods[name], keep)
    stats = PruneStats(params_before=before, params_after=sum(p.numel() for p in net.parameters()), blocks=len(saved))

    def undo():
        for m, s in reversed(saved):
            restore(m, s)
    return Handle("diff-pruning", [], stats=stats, on_remove=undo)


def finetune(denoiser, steps: int = 200, lr: float = 2e-4, batch: int = 64, seed: int = 0, teacher=None,
             distill: float = 0.5) -> list[float]:
    """A short fine-tune of the (pruned) network with the project's denoising loss; returns the losses.

    With ``teacher`` (the unpruned denoiser), LAPTOP-style output distillation: the loss is
    (1 - distill) x denoising + distill x ||net(x_t) - teacher_net(x_t)||², both in the network's own
    output space on the same noisy inputs."""
    from ..objectives import DiffusionLoss, LossConfig
    if teacher is not None and not (0 <= distill <= 1):
        raise ValueError(f"distill must lie in [0, 1], got {distill}")
    net = network(denoiser)
    x, y = training_batch(denoiser, 10 ** 6, seed)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = DiffusionLoss(LossConfig())
    net.requires_grad_(True).train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    losses = []
    try:
        for _ in range(steps):
            idx = torch.randint(0, len(x), (batch,), generator=gen)
            x0, yb = x[idx], None if y is None else y[idx]
            if teacher is None:
                loss = loss_fn(denoiser, x0, yb, gen).mean()
            else:
                args, target = loss_fn.net_io(denoiser, x0, yb, *loss_fn.draw(denoiser, x0, gen))
                out = net(*args)
                with torch.no_grad():
                    ref = network(teacher)(*args)
                loss = (1 - distill) * ((out - target) ** 2).mean() + distill * ((out - ref) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        net.requires_grad_(False).eval()
    return losses


def _check(denoiser) -> str | None:
    return None if groups(network(denoiser)) else "it has no effdiff ResBlock or DiT Mlp widths to prune"


register(Technique("diff-pruning", "prune", DiffPruningConfig, apply_diff_pruning, _check, needs=("keep",),
                   prepare_fn=prepare_diff_pruning, eager=lambda n: DiffPruningConfig(ratio=0.5),
                   paper="Fang, Ma & Wang 2023, Structural Pruning for Diffusion Models (Diff-Pruning)"))
