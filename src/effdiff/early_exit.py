"""Early exit (survey §3.3.3): run fewer of a DiT's blocks at some evaluations.

- ASE (Moon et al. 2024, "A Simple Early Exiting Framework for Accelerated Sampling in Diffusion
  Models"): a static, time-dependent schedule drops the *final* blocks, most at the first, noisiest
  steps and none at the last. A dropped block is the identity (its residual connection passes
  the hidden state on). The paper also fine-tunes the network under the schedule; this is the
  training-free part.
- DeeDiff (Tang et al. 2023, "DeeDiff: Dynamic Uncertainty-Aware Early Exiting for Accelerating
  Diffusion Model Generation"): an uncertainty estimation module (UEM) per layer, a small MLP on
  the layer's output tokens and the conditioning embedding c (time + class), predicts how far the
  early-exit output (the layer's hidden state sent through the final layer) is from the full
  output. At inference each sample leaves at the first layer whose predicted uncertainty is below
  the threshold; its remaining blocks are skipped and its hidden state goes to the final layer.
  The heads train with the backbone frozen on ``tanh(mean |y_i - y_full|)`` (network-output space).

    h = apply_ase(den, ASEConfig(max_drop=3))
    heads = train_exit_heads(den); heads.save("uem")
    with apply_deediff(den, DeeDiffConfig(ExitHeads.load("uem"), threshold=0.05)) as h:
        x = ed.sample(den, x, sigmas, solver="ddim", cond=labels); h.stats.avg_layers
"""
from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from . import checkpoint as ckpt
from .context import current_context
from .hooks import ExitStats, Handle, ModelHook, attach
from .sampling import randn, sample
from .seeds import ROUTERS     # exit-head trajectories off the bench's noise (issue 24)
from .sites import dit_blocks, kind, network
from .techniques import Run, Technique, register

# fraction of max_drop dropped at sampling progress p = step / (num_steps - 1) ∈ [0, 1]
SCHEDULES: dict[str, Callable[[float], float]] = {
    "linear": lambda p: 1.0 - p,
    "cosine": lambda p: math.cos(math.pi / 2 * p),
    "constant": lambda p: 1.0,
}


# ------------------------------------------------------------------------------------
# ASE: a static time-dependent block-dropping schedule
# ------------------------------------------------------------------------------------

@dataclass
class ASEConfig:
    """max_drop: final blocks dropped at step 0; schedule: how that shrinks over the steps
    (a name in ``SCHEDULES`` or a callable progress -> fraction)."""
    max_drop: int = 2
    schedule: str | Callable[[float], float] = "linear"

    def num_dropped(self, step: int, num_steps: int) -> int:
        f = SCHEDULES[self.schedule] if isinstance(self.schedule, str) else self.schedule
        return int(round(self.max_drop * f(step / max(1, num_steps - 1))))


class _Drop(ModelHook):
    def __init__(self, index: int, depth: int, config: ASEConfig, stats: ExitStats):
        self.index, self.depth, self.config, self.stats = index, depth, config, stats

    def __call__(self, module, call_next, *args, **kwargs):
        ctx = current_context()
        if ctx is None or ctx.num_steps is None:
            return call_next(*args, **kwargs)
        drop = self.index >= self.depth - self.config.num_dropped(ctx.step, ctx.num_steps)
        self.stats.add(**{"skipped" if drop else "computed": 1})
        return args[0] if drop else call_next(*args, **kwargs)


def apply_ase(model, config: ASEConfig | None = None) -> Handle:
    """Drop the final ``config.num_dropped(step, num_steps)`` blocks of a DiT at each step
    (inside ``ed.sample``). ``stats``: computed / skipped block calls and their skip_fraction."""
    c = config or ASEConfig()
    blocks = dit_blocks(model, "ASE")
    if not 0 <= c.max_drop <= len(blocks):
        raise ValueError(f"max_drop must be in [0, {len(blocks)}] for a DiT of depth {len(blocks)}, got {c.max_drop}")
    if isinstance(c.schedule, str) and c.schedule not in SCHEDULES:
        raise ValueError(f"unknown ASE schedule {c.schedule!r}; known: {', '.join(SCHEDULES)}")
    stats = ExitStats()
    return attach("ase", [(b, _Drop(i, len(blocks), c, stats)) for i, b in enumerate(blocks)], None, stats)


# ------------------------------------------------------------------------------------
# DeeDiff: learned per-layer uncertainty, per-sample exit
# ------------------------------------------------------------------------------------

_FORMAT = "effdiff-deediff-heads-1"


class ExitHeads(nn.Module):
    """One UEM per layer that may exit (all but the last): u_i = mean over tokens of
    sigmoid(MLP([h_i, c])), h_i [B, N, D] the block's output, c [B, D] -> u_i [B]."""

    def __init__(self, depth: int, dim: int, hidden: int = 64):
        super().__init__()
        self.depth, self.dim, self.hidden = depth, dim, hidden
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(2 * dim, hidden), nn.SiLU(), nn.Linear(hidden, 1))
                                   for _ in range(depth - 1))

    def forward(self, i: int, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        z = torch.cat([h, c[:, None].expand(-1, h.shape[1], -1)], dim=-1)   # [B, N, 2D]
        return torch.sigmoid(self.heads[i](z)).mean((1, 2))                  # [B]

    def save(self, path) -> None:
        ckpt.save(path, self.state_dict(), {"format": _FORMAT, "depth": self.depth, "dim": self.dim,
                                            "hidden": self.hidden})

    @classmethod
    def load(cls, path) -> "ExitHeads":
        t, meta = ckpt.load(path)
        if meta.get("format") != _FORMAT:
            raise ckpt.CheckpointError(f"{path}: not DeeDiff exit heads ({meta.get('format')!r})")
        heads = cls(int(meta["depth"]), int(meta["dim"]), int(meta["hidden"]))
        ckpt.load_state(heads, t, where=str(path))
        return heads.eval()


class _ExitState(threading.local):
    """Per forward call of the network (per thread: concurrent calls keep their own): which
    samples have exited, layers each has run."""
    exited: torch.Tensor | None = None
    layers: torch.Tensor | None = None


class _Forward(ModelHook):
    """On the network: opens a fresh exit state per call and accumulates the layer counts."""

    def __init__(self, state: _ExitState, stats: ExitStats):
        self.state, self.stats = state, stats

    def __call__(self, module, call_next, x, *args, **kwargs):
        st = self.state
        st.exited = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        st.layers = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        try:
            return call_next(x, *args, **kwargs)
        finally:
            self.stats.add(layers=int(st.layers.sum()), evaluations=x.shape[0])
            st.exited = st.layers = None


class _Exit(ModelHook):
    """On block i: run only the samples still inside; after it, let those below threshold exit."""

    def __init__(self, index: int, heads: ExitHeads, threshold: float, state: _ExitState):
        self.index, self.heads, self.threshold, self.state = index, heads, threshold, state

    def __call__(self, module, call_next, h, c, *rest):
        st = self.state
        if st.exited is None:                      # block called on its own: plain compute
            return call_next(h, c, *rest)
        active = ~st.exited
        if not active.any():
            return h
        if active.all():
            out = call_next(h, c, *rest)
        else:
            out = h.clone()
            out[active] = call_next(h[active], c[active], *[r[active] if torch.is_tensor(r) else r for r in rest])
        st.layers += active.long()
        if self.index < self.heads.depth - 1 and self.threshold > 0:
            with torch.no_grad():
                u = self.heads(self.index, out, c)
            st.exited = st.exited | (active & (u < self.threshold))
        return out


@dataclass
class DeeDiffConfig:
    """heads: the trained ``ExitHeads`` (``train_exit_heads`` or ``ExitHeads.load``); threshold:
    a sample exits after the first layer whose predicted uncertainty is below it (0 never exits)."""
    heads: ExitHeads | None = None
    threshold: float = 0.05


def apply_deediff(model, config: DeeDiffConfig) -> Handle:
    """Per-sample early exit of a DiT's blocks where the UEM's uncertainty < ``threshold``
    (0 never exits). ``stats``: layers / evaluations, ``avg_layers`` (blocks run per sample per
    evaluation)."""
    if not isinstance(config, DeeDiffConfig):
        raise TypeError(f"apply_deediff takes a DeeDiffConfig(heads=..., threshold=...), got {type(config).__name__}")
    heads = config.heads
    if heads is None:
        raise ValueError("DeeDiffConfig.heads is empty: train them with train_exit_heads(den, ...) or ExitHeads.load(path)")
    blocks, net = dit_blocks(model, "DeeDiff"), network(model)
    if heads.depth != len(blocks) or heads.dim != net.config.hidden_size:
        raise ValueError(f"exit heads for depth {heads.depth}, width {heads.dim} do not fit this DiT "
                         f"(depth {len(blocks)}, width {net.config.hidden_size})")
    heads.eval()
    state, stats = _ExitState(), ExitStats()
    hooks = [(net, _Forward(state, stats))]
    hooks += [(b, _Exit(i, heads, config.threshold, state)) for i, b in enumerate(blocks)]
    return attach("deediff", hooks, None, stats)


class _Features(ModelHook):
    """Training data: keep each block's output and its conditioning c."""

    def __init__(self, out: list):
        self.out = out

    def __call__(self, module, call_next, h, c, *rest):
        y = call_next(h, c, *rest)
        self.out.append((y, c))
        return y


class _Inputs(ModelHook):
    """Training data: keep the network's inputs at every evaluation of ``ed.sample``."""

    def __init__(self, out: list):
        self.out = out

    def __call__(self, module, call_next, *args, **kwargs):
        self.out.append((args, kwargs))
        return call_next(*args, **kwargs)


@torch.no_grad()
def exit_features(den, inputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For network inputs ``(args, kwargs)``: block outputs h [M, depth-1, N, D], c [M, D] and
    targets tanh(mean |y_i - y_full|) [M, depth-1] of the early-exit outputs y_i."""
    net, blocks = network(den), dit_blocks(den, "DeeDiff")
    H, C, U = [], [], []
    for args, kwargs in inputs:
        feats: list = []
        with attach("deediff-features", [(b, _Features(feats)) for b in blocks]):
            y = net(*args, **kwargs)
        c = feats[0][1]
        early = [net.unpatchify(net.final_layer(h, c)) for h, _ in feats[:-1]]
        H.append(torch.stack([h for h, _ in feats[:-1]], 1))
        C.append(c)
        U.append(torch.stack([torch.tanh((e - y).abs().flatten(1).mean(1)) for e in early], 1))
    return torch.cat(H), torch.cat(C), torch.cat(U)


def train_exit_heads(den, steps: int = 20, solver: str = "ddim", *, sigmas=None, num_samples: int = 64,
                     iters: int = 400, batch_size: int = 128, lr: float = 3e-3, hidden: int = 64,
                     seed: int = ROUTERS.start + 2, log=None) -> ExitHeads:
    """Train the UEM heads on a frozen DiT denoiser: data are the network's inputs along
    ``num_samples`` full-compute ``ed.sample`` runs (random labels), loss Σ_i MSE(u_i, tanh(mean
    |y_i - y_full|)) over ``iters`` Adam steps. ``log(it, loss)`` every 100 iterations."""
    from .timesteps import uniform_t
    if sigmas is None:
        sigmas = uniform_t(steps, den.process)
    net, blocks = network(den), dit_blocks(den, "DeeDiff")
    cfg = net.config
    g = torch.Generator().manual_seed(seed)
    cond = torch.randint(0, den.cond_classes, (num_samples,), generator=g) if getattr(den, "cond_classes", 0) else None
    inputs: list = []
    with attach("deediff-inputs", [(net, _Inputs(inputs))]):
        x = randn((num_samples, cfg.in_channels, cfg.image_size, cfg.image_size), seed=seed) * sigmas[0].float()
        sample(den, x, sigmas, solver=solver, cond=cond, seed=seed)
    H, C, U = exit_features(den, inputs)
    heads = ExitHeads(len(blocks), cfg.hidden_size, hidden)
    opt = torch.optim.Adam(heads.parameters(), lr=lr)
    with torch.enable_grad():
        for it in range(iters):
            idx = torch.randint(0, len(H), (batch_size,), generator=g)
            u = torch.stack([heads(i, H[idx, i], C[idx]) for i in range(len(blocks) - 1)], 1)
            loss = (u - U[idx]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if log is not None and it % 100 == 0:
                log(it, loss.item())
    return heads.eval()


def prepare_deediff(model, config: DeeDiffConfig, run: Run, num_samples: int = 32, **train) -> DeeDiffConfig:
    """Train the exit heads on ``run``'s solver and σ schedule (the technique registry's prepare step)."""
    heads = train_exit_heads(model, sigmas=run.sigmas, solver=run.solver, num_samples=num_samples, **train)
    return dataclasses.replace(config, heads=heads)


def _check_dit(model) -> str | None:
    return None if kind(model) == "dit" else "needs a transformer with .blocks"


def _check_deediff(model) -> str | None:
    net = network(model)
    if _check_dit(model) is not None or not all(hasattr(net, a) for a in ("final_layer", "unpatchify", "config")):
        return "needs effdiff's DiT (its final layer turns any block's output into a prediction)"
    return None


register(Technique("ase", "early-exit", ASEConfig, apply_ase, _check_dit,
                   exact=lambda n: ASEConfig(max_drop=0), eager=lambda n: ASEConfig(max_drop=1, schedule="constant"),
                   paper="Moon et al. 2024, ASE"))
register(Technique("deediff", "early-exit", DeeDiffConfig, apply_deediff, _check_deediff, needs=("heads",),
                   prepare_fn=prepare_deediff, exact=lambda n: DeeDiffConfig(threshold=0.0),
                   eager=lambda n: DeeDiffConfig(threshold=1.0), paper="Tang et al. 2023, DeeDiff"))
