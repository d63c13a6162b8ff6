"""EfficientDM-style quantization-aware fine-tuning (He et al. 2023, "EfficientDM: Efficient
Quantization-Aware Fine-Tuning of Low-Bit Diffusion Models") as the Technique ``qat``.

Starting from timestep-aware PTQ (``prepare_ptq``: calibrated weight scales and per-step activation
scales), every quantized Linear / Conv2d that ``peft`` can wrap gets a LoRA adapter, and the forward
sees the adapter merged *before* quantization:

    y = Q_a,t(x) · fake_quant(W + (α/r) B A)ᵀ        weight scales fixed from PTQ, gradients by STE
    Q_a,t: LSQ-style activation quantizer with one learned scale per sampling step t (EfficientDM's
           temporal activation LSQ; learned in log space, zero-points fixed from PTQ)

Training is data-free distillation from the full-precision model: the fp sampler runs its own
trajectory (``calibration.calibrate``'s network spy, every step kept), and at each step the loss is
the MSE between the fp network's output and the quantized network's output on the same input.
Afterwards the adapters are merged, the quantized weights exported and the peft layers removed: the
result (``config.state``) is a plain fake-quantized model in ``ptq``'s state format, applied by the
same removable hooks (``apply`` never writes the model's parameters). Layers peft cannot wrap (a
Linear/Conv2d subclass such as the UNet's input ``Conv``) keep their PTQ weight and learn only
their activation scales. Not implemented: EfficientDM's scale-aware LoRA gradient rescaling.

    t = techniques.get("qat")
    cfg = t.prepare(den, QATConfig(w_bits=4, a_bits=8, steps=300), techniques.Run(x_T, sigmas, "ddim", labels))
    with t.apply(den, cfg) as h:
        x = ed.sample(den, x_T, sigmas, "ddim", cond=labels)
    cfg.state["history"]            # distillation loss at the PTQ start, at the end, per step; seconds
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..hooks import ModelHook, attach
from ..sampling import randn
from ..sites import network
from ..techniques import Run, Technique, register
from .calibration import at_step, calibrate
from .layers import ActQuant, QuantHook, run_with, step_key, weight_qparams
from .ptq import PTQConfig, _check, apply_ptq, prepare_ptq
from .quantizer import QuantSpec, fake_quant
from .split import skip_splits

Tensor = torch.Tensor
ADAPTER = "qat"
WEIGHTINGS = ("relative", "none")


@dataclass
class QATConfig:
    """``w_bits`` / ``a_bits``; ``rank``: LoRA rank (α = rank: scale 1); ``steps`` of Adam at ``lr``
    (LoRA factors) and ``scale_lr`` (log activation scales) on batches of ``batch_size`` (network
    input, step) pairs from ``num_samples`` fp trajectories of the run's schedule (the run's noise
    first, then fresh noise); ``ptq``: the PTQ that initialises it (default ``PTQConfig(w_bits,
    a_bits)``); ``weighting``: "relative" divides each step's MSE by its value at the PTQ start (every
    step counts alike: an eps-model's last, tiny-σ step otherwise dominates though σ scales its
    error away), "none": plain MSE (EfficientDM); ``progress``: a tqdm bar; ``state``: filled by
    ``prepare``."""
    w_bits: int = 4
    a_bits: int = 8
    rank: int = 4
    steps: int = 300
    lr: float = 5e-4
    scale_lr: float = 1e-3
    batch_size: int = 16
    num_samples: int = 64
    weighting: str = "relative"
    ptq: PTQConfig | None = None
    exclude: tuple[str, ...] = ()
    seed: int = 0
    progress: bool = True
    state: dict | None = None

    def __post_init__(self):
        QuantSpec(self.w_bits), QuantSpec(self.a_bits)          # validates the bit-widths
        for name in ("rank", "batch_size", "num_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; known: {', '.join(WEIGHTINGS)}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {self.steps!r}")

    def ptq_config(self) -> PTQConfig:
        return self.ptq if self.ptq is not None else PTQConfig(self.w_bits, self.a_bits, exclude=self.exclude)


def lsq(x: Tensor, scale: Tensor, zero: Tensor, spec: QuantSpec) -> Tensor:
    """Learned-step-size fake quantization (Esser et al. 2020): rounding by straight-through, so the
    gradient reaches ``scale`` (inside the grid: round(x/s) - x/s; clipped: the grid's end - z)."""
    v = x / scale
    v = v + (torch.round(v) - v).detach()
    return (torch.clamp(v + zero, spec.qmin, spec.qmax) - zero) * scale


class TemporalLSQ(nn.Module):
    """One learned activation scale per sampling step (and one for all steps, used outside a sampling
    loop), initialised from a PTQ table; looked up with the loop context like ``ActQuant``."""

    def __init__(self, spec: QuantSpec, dim: int, table: dict, bounds, sigmas: Tensor):
        super().__init__()
        self.spec, self.sigmas = spec, sigmas
        self.shaper = ActQuant(spec, dim, None, bounds, sigmas)             # reshapes per-segment scales
        self.keys = list(table)
        self.log_scale = nn.ParameterList([nn.Parameter(table[k][0].detach().float().log()) for k in self.keys])
        self.zero = [table[k][1].detach().float() for k in self.keys]

    def forward(self, x: Tensor) -> Tensor:
        i = self.keys.index(step_key(dict.fromkeys(self.keys), self.sigmas))
        s, z = self.shaper._shape(self.log_scale[i].exp(), self.zero[i])
        return lsq(x, s.to(x.dtype), z.to(x.dtype), self.spec)

    def table(self) -> dict:
        """The learned (scale, zero) per key, in ``ptq``'s table format."""
        return {k: (ls.detach().exp(), z) for k, ls, z in zip(self.keys, self.log_scale, self.zero)}


class QATHook(ModelHook):
    """On a peft LoRA layer: its base op on ``act(x)`` with fake_quant(W + ΔW_lora) as the weight."""

    name = "quant"

    def __init__(self, scale: Tensor, zero: Tensor, spec: QuantSpec, act):
        self.scale, self.zero, self.spec, self.act = scale, zero, spec, act

    def weight(self, module) -> Tensor:
        w = module.get_base_layer().weight + module.get_delta_weight(ADAPTER)
        return fake_quant(w, self.scale, self.zero, self.spec)

    def __call__(self, module, call_next, x, *args, **kwargs):
        if self.act is not None:
            x = self.act(x)
        return run_with(module.get_base_layer(), x, self.weight(module))


def _act(st: dict, sigmas):
    """The layer's activation quantizer while training: learned per-step scales, or PTQ's per-token one."""
    if st["act"] is None:
        return ActQuant(st["a_spec"], st["dim"], None, st["bounds"], sigmas)
    return TemporalLSQ(st["a_spec"], st["dim"], st["act"], st["bounds"], sigmas)


class QATSession:
    """The model being fine-tuned: LoRA adapters (peft) on the quantized layers and QAT hooks, from a
    PTQ ``state``. ``parameters()`` -> (LoRA factors, log scales); ``export()`` -> a ``ptq`` state
    with the merged, quantized weights and learned scales; ``close()`` removes every trace."""

    def __init__(self, denoiser, config: QATConfig, ptq_state: dict, splits: dict, observer: str):
        from ..finetune.lora import LoRAConfig, add_lora
        self.net, self.state, self.config = network(denoiser), ptq_state, config
        self.grad_flags = {n: p.requires_grad for n, p in self.net.named_parameters()}
        mods = dict(self.net.named_modules())
        self.lora = [n for n in ptq_state["layers"] if type(mods[n]) in (nn.Linear, nn.Conv2d)]
        sigmas = ptq_state["sigmas"]
        self.acts = {n: _act(st, sigmas) for n, st in ptq_state["layers"].items()}
        wq = {n: weight_qparams(mods[n].weight.detach(), ptq_state["layers"][n]["w_spec"], observer, splits.get(n))
              for n in self.lora}
        self.handle, self.hooks = None, {}
        try:
            if self.lora:
                add_lora(self.net, LoRAConfig(rank=config.rank, targets=self.lora), name=ADAPTER)
            mods = dict(self.net.named_modules())                       # LoRA layers replaced the originals
            self.hooks = {n: (QATHook(*wq[n], ptq_state["layers"][n]["w_spec"], self.acts[n]) if n in wq
                         else QuantHook(ptq_state["layers"][n]["weight"], self.acts[n])) for n in ptq_state["layers"]}
            self.handle = attach("quant", [(mods[n], h) for n, h in self.hooks.items()])
        except BaseException:
            self.close()
            raise

    def parameters(self) -> tuple[list, list]:
        from ..finetune.lora import adapter_parameters
        lora = adapter_parameters(self.net, ADAPTER) if self.lora else []
        scales = [p for a in self.acts.values() if isinstance(a, TemporalLSQ) for p in a.parameters()]
        return lora, scales

    def export(self) -> dict:
        """``ptq`` state: the merged quantized weight of each LoRA layer, the learned activation tables."""
        mods = dict(self.net.named_modules())
        layers = {}
        with torch.no_grad():
            for n, st in self.state["layers"].items():
                st = dict(st)
                if n in self.lora:
                    st["weight"] = self.hooks[n].weight(mods[n]).detach().clone()
                if isinstance(self.acts[n], TemporalLSQ):
                    st["act"] = self.acts[n].table()
                layers[n] = st
        return {**self.state, "layers": layers}

    def close(self) -> None:
        from ..finetune.lora import layers, remove_lora
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        if layers(self.net):
            remove_lora(self.net)
        for n, p in self.net.named_parameters():
            p.requires_grad_(self.grad_flags.get(n, p.requires_grad))


def trajectories(denoiser, run: Run, num_samples: int, seed: int) -> list[tuple]:
    """The fp network's (step, σ, args, output) at every step of ``num_samples`` sampling runs on
    ``run``'s schedule: the run's own noise first, then fresh noise (seeded), the run's labels."""
    n = len(run.sigmas) - 1
    batch = run.x.shape[0]
    out = []
    for i in range(math.ceil(num_samples / batch)):
        x = run.x if i == 0 else randn(tuple(run.x.shape), seed=seed + 7919 * i) * torch.as_tensor(run.sigmas)[0].float()
        out += calibrate(denoiser, dataclasses.replace(run, x=x), {}, {}, keep=batch, keep_steps=n).net_io
    by_step: dict = {}
    for step, sigma, args, y in out:
        by_step.setdefault((step, sigma), []).append((args, y))
    data = []
    for (step, sigma), items in sorted(by_step.items()):
        args = tuple(torch.cat([a[j] for a, _ in items])[:num_samples] if torch.is_tensor(items[0][0][j]) else items[0][0][j]
                     for j in range(len(items[0][0])))
        data.append((step, sigma, args, torch.cat([y for _, y in items])[:num_samples]))
    return data


def _batch(args: tuple, idx: Tensor) -> tuple:
    return tuple(a[idx] if torch.is_tensor(a) and a.ndim > 0 else a for a in args)


def distill_loss(net, data: list, num_steps: int, idx: Tensor | None = None, step: int | None = None,
                 weights: list | None = None) -> Tensor:
    """MSE between the network (hooks attached) and the recorded fp outputs, times ``weights`` (per
    entry; default 1): at one entry of ``data`` (``step``: its index, ``idx``: the samples) or
    averaged over all of them."""
    keys = [step] if step is not None else range(len(data))
    total = 0.0
    for k in keys:
        st, sigma, args, y = data[k]
        a, y = (_batch(args, idx), y[idx]) if idx is not None else (args, y)
        with at_step(num_steps, st, sigma):
            total = total + F.mse_loss(net(*a), y) * (1.0 if weights is None else weights[k])
    return total / len(keys)


def prepare_qat(denoiser, config: QATConfig, run: Run) -> QATConfig:
    """PTQ on ``run``, then LoRA QAT distilled from the fp model; returns ``config`` with ``state``
    (a ``ptq`` state plus ``history``: the weighted loss over all data at the start (1 with
    "relative") and end, each step's loss, seconds)."""
    ptq_cfg = config.ptq_config()
    ptq_state = prepare_ptq(denoiser, ptq_cfg, run).state
    splits = skip_splits(denoiser) if ptq_cfg.split else {}
    data = trajectories(denoiser, run, config.num_samples, config.seed)
    num_steps, net = len(run.sigmas) - 1, network(denoiser)
    g = torch.Generator().manual_seed(config.seed)
    t0 = time.perf_counter()
    session = QATSession(denoiser, config, ptq_state, splits, ptq_cfg.w_observer)
    try:
        lora, scales = session.parameters()
        opt = torch.optim.Adam([{"params": lora, "lr": config.lr}, {"params": scales, "lr": config.scale_lr}])
        with torch.no_grad():
            per_step = [float(distill_loss(net, data, num_steps, step=k)) for k in range(len(data))]
        weights = [1 / max(v, 1e-12) for v in per_step] if config.weighting == "relative" else None
        start = 1.0 if weights else sum(per_step) / len(per_step)
        losses = []
        from tqdm.auto import tqdm
        with torch.enable_grad(), tqdm(total=config.steps, desc="qat", mininterval=2.0, disable=not config.progress) as bar:
            for _ in range(config.steps):
                k = int(torch.randint(len(data), (1,), generator=g))
                n = data[k][3].shape[0]
                idx = torch.randperm(n, generator=g)[:config.batch_size]
                loss = distill_loss(net, data, num_steps, idx, k, weights)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
        with torch.no_grad():
            end = float(distill_loss(net, data, num_steps, weights=weights))
        state = session.export()
    finally:
        session.close()
    state["history"] = {"start": start, "end": end, "losses": losses, "start_per_step": per_step, "seconds": time.perf_counter() - t0,
                        "lora_layers": len(session.lora), "pairs": sum(d[3].shape[0] for d in data)}
    return dataclasses.replace(config, state=state)


def apply_qat(denoiser, config: QATConfig):
    """Attach the fine-tuned quantized model (``config.state``, merged weights); the handle removes it."""
    return apply_ptq(denoiser, config)


PAPER = "EfficientDM (He et al. 2023): LoRA QAT distilled from the fp model, temporal activation LSQ"
register(Technique("qat", "quant", QATConfig, apply_qat, _check, needs=("state",),
                   prepare_fn=lambda d, c, r, **kw: prepare_qat(d, c, r),
                   eager=lambda n: QATConfig(w_bits=4, a_bits=8, steps=20, progress=False), paper=PAPER))
