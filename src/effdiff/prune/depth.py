"""Depth pruning: remove whole residual blocks chosen by their sensitivity on the sampling trajectory
(LAPTOP-Diff, Zhang et al. 2024; LayerMerge, Kim et al. 2024).

A dropped block keeps only its shortcut: a DiT block or a UNet attention block becomes the
identity, a UNet ``ResBlock`` its skip path (the identity, or the 1x1 projection it already
applies when its input and output widths differ). Every other shape is unchanged.

Sensitivity: the unpruned model samples ``run`` once and its denoiser calls are recorded
(x_t, σ_t, cond, x0); a set of dropped blocks is scored by the mean squared error of the
pruned denoiser's x0 on those states (``error="x0"``; ``"eps"`` divides by σ, ``"sample"`` compares
whole sampling runs instead). ``criterion="greedy"`` adds one block at a time, the one whose
actual error (with the blocks already chosen dropped) grows least (per MAC removed under a MAC
budget); ``"oneshot"`` is LAPTOP's additive proxy: each block's error when dropped alone, summed,
minimised exactly by dynamic programming over the MAC budget.

    t = techniques.get("depth-pruning")
    cfg = t.prepare(den, DepthPruningConfig(drop=0.4), run)   # >= 40% of the MACs removed
    with t.apply(den, cfg) as h:                              # in place; remove() restores it
        finetune(den, steps=400); save_pruned(den, "out/m")
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..hooks import Handle
from ..models.dit import DiTBlock
from ..models.unet import AttentionBlock, ResBlock
from ..sampling import sample
from ..sites import network, replace
from ..techniques import Run, Technique, register
from .diff_pruning import PruneStats

CRITERIA = ("greedy", "oneshot")
ERRORS = ("x0", "eps", "sample")


class Skip(nn.Module):
    """A dropped residual block: ``skip(x)`` (its shortcut; the identity by default); the
    embedding, conditioning and context arguments are ignored."""

    def __init__(self, skip: nn.Module | None = None):
        super().__init__()
        self.skip = skip if skip is not None else nn.Identity()

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.skip(x)


def shortcut(block: nn.Module) -> Skip:
    """What is left of ``block`` once its residual branch is removed."""
    return Skip(block.skip) if isinstance(block, ResBlock) else Skip()


def candidates(net: nn.Module) -> list[str]:
    """Names of the removable residual blocks of an effdiff DiT (``blocks.i``) or UNet (the
    ``ResBlock`` / ``AttentionBlock`` items of its blocks, e.g. ``input_blocks.1.0``), in call order."""
    return [n for n, m in net.named_modules() if isinstance(m, (DiTBlock, ResBlock, AttentionBlock))]


def dropped(net: nn.Module) -> list[str]:
    """Names of the blocks of ``net`` that are dropped (what a pruned checkpoint records)."""
    return [n for n, m in net.named_modules() if isinstance(m, Skip)]


def drop(net: nn.Module, names) -> list[tuple[str, nn.Module]]:
    """Drop the blocks ``names`` in place; returns [(name, original block)] for ``undrop``."""
    mods = dict(net.named_modules())
    for n in names:
        if n not in mods:
            raise KeyError(f"no block named {n!r} in this network")
        if not isinstance(mods[n], (DiTBlock, ResBlock, AttentionBlock)):
            raise TypeError(f"{n!r} is a {type(mods[n]).__name__}, not a removable residual block")
    return [(n, replace(net, n, shortcut(mods[n]))) for n in names]


def undrop(net: nn.Module, saved: list[tuple[str, nn.Module]]) -> None:
    """Put the original blocks back (exact: the same module objects)."""
    for n, old in reversed(saved):
        replace(net, n, old)


def example_input(net: nn.Module, batch: int = 2):
    """A dummy (x, noise_labels, class_labels) for ``net`` (effdiff UNet / DiT configs)."""
    cfg = net.config
    x = torch.zeros(batch, cfg.in_channels, cfg.image_size, cfg.image_size)
    y = torch.zeros(batch, dtype=torch.long) if getattr(cfg, "num_classes", 0) else None
    return x, torch.ones(batch), y


def net_macs(net: nn.Module) -> float:
    """Multiply-accumulates of one network evaluation per sample."""
    from ..metrics import macs_per_sample
    x, t, y = example_input(net)
    return macs_per_sample(lambda a: net(a, t, y), x)


def block_macs(net: nn.Module, names) -> dict[str, float]:
    """MACs removed by dropping each block alone (additive: blocks keep every shape)."""
    total, out = net_macs(net), {}
    for n in names:
        saved = drop(net, [n])
        try:
            out[n] = total - net_macs(net)
        finally:
            undrop(net, saved)
    return out


@dataclass
class DepthPruningConfig:
    """``drop``: an int is the number of blocks removed, a float in (0, 1) the share of the
    network's MACs removed at least (the MAC budget); ``criterion``: "greedy" (actual error of the
    set) or "oneshot" (summed single-block errors, exact DP); ``error``: "x0", "eps" or "sample";
    ``projections``: UNet ResBlocks whose shortcut is a 1x1 projection are candidates too;
    ``blocks``: the dropped block names, filled by ``prepare`` (or given); ``sensitivity``: each
    candidate's error when dropped alone (filled by ``prepare``)."""
    drop: int | float = 1
    criterion: str = "greedy"
    error: str = "x0"
    projections: bool = True
    blocks: tuple | None = None
    sensitivity: dict | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        if self.error not in ERRORS:
            raise ValueError(f"error must be one of {ERRORS}, got {self.error!r}")
        if isinstance(self.drop, bool) or not isinstance(self.drop, (int, float)):
            raise TypeError(f"drop must be an int (blocks) or a float (MAC share), got {self.drop!r}")
        if isinstance(self.drop, int) and self.drop < 0 or isinstance(self.drop, float) and not 0 < self.drop < 1:
            raise ValueError(f"drop must be an int >= 0 or a float in (0, 1), got {self.drop}")


@dataclass
class DepthStats(PruneStats):
    """``blocks``: blocks dropped; params and MACs per network evaluation before / after."""
    macs_before: float = 0.0
    macs_after: float = 0.0
    derived = ("macs_ratio",)

    @property
    def macs_ratio(self) -> float:
        return self.macs_after / self.macs_before if self.macs_before else 0.0


class Trajectory:
    """The unpruned model's denoiser calls on a sampling ``run`` and the error of a pruned one."""

    def __init__(self, denoiser, run: Run, error: str = "x0", chunk: int = 512):
        self.denoiser, self.run, self.error, self.chunk = denoiser, run, error, chunk
        calls = []

        def record(x, sigma, cond=None):
            x0 = denoiser(x, sigma, cond)
            calls.append((x, torch.as_tensor(sigma, dtype=x.dtype).expand(len(x)).clone(), cond, x0))
            return x0
        with torch.no_grad():
            self.final = self._sample(record)
        self.x = torch.cat([c[0] for c in calls])
        self.sigma = torch.cat([c[1] for c in calls])
        self.cond = None if calls[0][2] is None else torch.cat([torch.as_tensor(c[2]) for c in calls])
        # the reference x0 evaluated in the same chunks as every candidate: a matrix product's last bits can depend
        # on the batch it is part of, so a block that changes nothing has an error of exactly 0 on any CPU
        with torch.no_grad():
            self.x0 = torch.cat([x0 for _, x0 in self._chunks()])

    def _sample(self, den):
        r = self.run
        return sample(den, r.x, r.sigmas, r.solver, r.cond, seed=r.seed)

    def _chunks(self):
        """(slice, the denoiser's x0) over the recorded calls, ``chunk`` at a time."""
        for i in range(0, len(self.x), self.chunk):
            s = slice(i, i + self.chunk)
            yield s, self.denoiser(self.x[s], self.sigma[s], None if self.cond is None else self.cond[s])

    @torch.no_grad()
    def __call__(self) -> float:
        """The error of the denoiser as it is now (blocks dropped) against the recorded run."""
        if self.error == "sample":
            return float((self._sample(self.denoiser) - self.final).pow(2).mean())
        total = 0.0
        for s, x0 in self._chunks():
            d = x0 - self.x0[s]
            if self.error == "eps":
                d = d / self.sigma[s].clamp_min(1e-8).view(-1, *[1] * (d.ndim - 1))
            total += float(d.pow(2).sum())
        return total / self.x0.numel()


def _done(chosen, macs, target) -> bool:
    return len(chosen) >= target if isinstance(target, int) else sum(macs[b] for b in chosen) >= target


def greedy(cands: list[str], macs: dict, target, error_of) -> list[str]:
    """Add blocks one at a time, each the one whose actual set error grows least (per MAC removed
    when ``target`` is a MAC budget, a float; a block count when an int)."""
    chosen, err = [], error_of([])
    while not _done(chosen, macs, target):
        rest = [b for b in cands if b not in chosen]
        if not rest:
            break
        scored = []
        for b in rest:
            e = error_of(chosen + [b])
            scored.append(((e - err) / (macs[b] if isinstance(target, float) else 1.0), e, b))
        _, err, b = min(scored, key=lambda t: (t[0], cands.index(t[2])))
        chosen.append(b)
    return chosen


def oneshot(cands: list[str], macs: dict, target, single: dict) -> list[str]:
    """LAPTOP's one-shot proxy: minimise the sum of single-block errors. For a block count, the
    count smallest; for a MAC budget, exact dynamic programming over the Pareto frontier of
    (MACs removed, capped at the budget; summed error)."""
    if isinstance(target, int):
        return sorted(cands, key=lambda b: single[b])[:target]
    states = [(0.0, 0.0, ())]                       # (MACs removed, summed error, blocks)
    for b in cands:
        grown = states + [(min(m + macs[b], target), e + single[b], s + (b,)) for m, e, s in states]
        grown.sort(key=lambda t: (-t[0], t[1]))
        states, best = [], math.inf
        for t in grown:                            # keep a state only if no state removing more is as good
            if t[1] < best:
                states.append(t)
                best = t[1]
    done = [t for t in states if t[0] >= target]
    return [b for b in cands if b in min(done, key=lambda t: t[1])[2]]


def prepare_depth_pruning(denoiser, config: DepthPruningConfig, run: Run, **_) -> DepthPruningConfig:
    """Measure every candidate's sensitivity on ``run`` and choose the blocks to drop."""
    net = network(denoiser)
    cands = [n for n in candidates(net) if config.projections or not isinstance(net.get_submodule(n), ResBlock)
             or isinstance(net.get_submodule(n).skip, nn.Identity)]
    macs = block_macs(net, cands)
    target = config.drop if isinstance(config.drop, int) else config.drop * net_macs(net)
    if isinstance(target, int) and target > len(cands):
        raise ValueError(f"drop={target} blocks but this network has {len(cands)} removable blocks")
    if isinstance(target, float) and target > sum(macs.values()) + 1e-6:
        raise ValueError(f"drop={config.drop} of the MACs, but dropping every removable block removes "
                         f"{sum(macs.values()) / net_macs(net):.1%}")
    traj = Trajectory(denoiser, run, config.error)

    def error_of(names) -> float:
        saved = drop(net, names)
        try:
            return traj()
        finally:
            undrop(net, saved)
    single = {b: error_of([b]) for b in cands}
    if config.criterion == "greedy":
        blocks = greedy(cands, macs, target, error_of)
    else:
        blocks = oneshot(cands, macs, target, single)
    return dataclasses.replace(config, blocks=tuple(blocks), sensitivity=single)


def apply_depth_pruning(denoiser, config: DepthPruningConfig) -> Handle:
    """Drop ``config.blocks`` from ``denoiser``'s network in place; the handle puts them back."""
    net = network(denoiser)
    params = lambda: sum(p.numel() for p in net.parameters())
    before, macs_before = params(), net_macs(net)
    saved = drop(net, config.blocks)
    stats = DepthStats(params_before=before, params_after=params(), blocks=len(saved),
                       macs_before=macs_before, macs_after=net_macs(net))
    return Handle("depth-pruning", [], stats=stats, on_remove=lambda: undrop(net, saved))


def _check(denoiser) -> str | None:
    return None if candidates(network(denoiser)) else "it has no effdiff DiT blocks or UNet residual blocks to drop"


register(Technique("depth-pruning", "prune", DepthPruningConfig, apply_depth_pruning, _check, needs=("blocks",),
                   prepare_fn=prepare_depth_pruning, exact=lambda n: DepthPruningConfig(drop=0, blocks=()),
                   eager=lambda n: DepthPruningConfig(drop=1),
                   paper="Zhang et al. 2024, LAPTOP-Diff; Kim et al. 2024, LayerMerge"))
