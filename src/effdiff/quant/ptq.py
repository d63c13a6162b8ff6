"""Post-training quantization of a diffusion model, naive and timestep-aware, as Techniques.

- ``ptq-naive``: round-to-nearest, min-max ranges, one activation scale per layer over the whole
  trajectory (the baseline every diffusion-PTQ paper starts from).
- ``ptq``: timestep-aware PTQ — calibration across the sampling trajectory (Q-Diffusion /
  PTQ4DM schemes), MSE-searched ranges, per-step activation scales (TDQ, So et al. 2023, as a
  table looked up with the loop context's step), Q-Diffusion's split quantization of skip
  concatenations, optional learned rounding (AdaRound/BRECQ), PTQD's noise correction and mixed
  precision by sensitivity.

    t = techniques.get("ptq")
    cfg = t.prepare(den, PTQConfig(w_bits=4, a_bits=8), techniques.Run(x_T, sigmas, "ddim", labels))
    with t.apply(den, cfg) as h:
        x = ed.sample(den, x_T, sigmas, "ddim", cond=labels)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..hooks import ModelHook, attach
from ..sites import network
from ..techniques import Run, Technique, register
from . import observers
from .adaround import Rounding, adaround, brecq
from .calibration import SCHEMES, Calibration, at_step, calibrate
from .layers import ActQuant, QuantHook, fake_quant, quant_layers, weight_qparams
from .mixed import most_sensitive, sensitivity
from .ptqd import PTQDHook, calibrate_correction, x0_gain
from .quantizer import QuantSpec, qparams
from .split import skip_splits
from .stats import QuantStats


@dataclass
class PTQConfig:
    """Timestep-aware PTQ. ``w_*`` / ``a_*``: weight / activation bits, granularity, symmetry and
    range observer; ``scheme``: calibration steps (trajectory | ptq4dm | noise); ``per_step``:
    TDQ-style activation scales per step; ``split``: Q-Diffusion's skip split; ``adaround_iters``:
    learned-rounding iterations per layer (0: round to nearest), fitted per layer
    (``reconstruct="layer"``, AdaRound) or per residual block (``"block"``, BRECQ: every layer of a
    block at once against the block's output; layers outside blocks per layer); a layer reading the network's input
    (the noisy image, whose Gaussian outliers a calibrated range would clip) quantizes it per token at
    run time; ``ptqd``: noise correction (``ptqd_variance``: and its residual variance taken out of
    the noise the ancestral solvers inject);
    ``mixed_fraction``: share of layers (most sensitive first) kept at ``mixed_bits``;
    ``first_last``: the layers reading the network input and the last-run (output) layer kept at
    ``mixed_bits`` too (Q-Diffusion's and PTQ4DM's practice; the eps output is multiplied by σ);
    ``exclude``: layer-name substrings left in full precision; ``state``: filled by ``prepare``."""
    w_bits: int = 8
    a_bits: int = 8
    w_granularity: str = "channel"
    group_size: int | None = None
    a_granularity: str = "tensor"
    w_symmetric: bool = True
    a_symmetric: bool = False
    w_observer: str = "mse"
    a_observer: str = "minmax"     # clipping activations (mse/percentile) hurt on the zoo models: docs/compression.md
    scheme: str = "trajectory"
    per_step: bool = True
    split: bool = True
    adaround_iters: int = 0
    reconstruct: str = "layer"
    ptqd: bool = False
    ptqd_variance: bool = True
    mixed_fraction: float = 0.0
    mixed_bits: int = 8
    first_last: bool = True
    exclude: tuple[str, ...] = ()
    state: dict | None = None

    def __post_init__(self):
        QuantSpec(self.w_bits, self.w_symmetric, self.w_granularity, self.group_size)   # validates
        QuantSpec(self.a_bits, self.a_symmetric, self.a_granularity)
        if self.a_granularity not in ("tensor", "token"):
            raise ValueError(f"activations are quantized per 'tensor' or per 'token', got {self.a_granularity!r}")
        if self.reconstruct not in ("layer", "block"):
            raise ValueError(f"reconstruct is 'layer' or 'block', got {self.reconstruct!r}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown calibration scheme {self.scheme!r}; known: {', '.join(SCHEMES)}")
        observers.get(self.w_observer), observers.get(self.a_observer)

    def specs(self, high: bool = False) -> tuple[QuantSpec, QuantSpec]:
        wb, ab = (max(self.w_bits, self.mixed_bits), max(self.a_bits, self.mixed_bits)) if high else (self.w_bits, self.a_bits)
        return (QuantSpec(wb, self.w_symmetric, self.w_granularity, self.group_size),
                QuantSpec(ab, self.a_symmetric, self.a_granularity))


@dataclass
class NaivePTQConfig(PTQConfig):
    """The naive baseline: min-max ranges, one activation scale for all steps, no split."""
    w_observer: str = "minmax"
    a_observer: str = "minmax"
    per_step: bool = False
    split: bool = False
    first_last: bool = False


def _act_table(rec, spec: QuantSpec, observer: str, steps: list[int], per_step: bool) -> dict:
    """Activation (scale, zero) per key: None (all steps) and, with ``per_step``, each step."""
    def one(keys):
        if observer == "minmax":
            lo, hi = rec.range(keys)
        else:
            lo, hi = observers.get(observer)(rec.sample(keys), spec)
        return qparams(lo, hi, spec)
    table = {None: one(steps)}
    if per_step:
        table.update({s: one([s]) for s in steps if s in rec.lo})
    return table


def _layer_state(name, layer, cfg: PTQConfig, cal: Calibration, splits: dict, high: bool) -> dict:
    """One layer's quantized weight and activation table."""
    w_spec, a_spec = cfg.specs(high)
    rec = cal.layers[name]
    if rec.is_input:     # the noisy image itself: never clipped to a calibrated range
        a_spec = dataclasses.replace(a_spec, granularity="token")
    bounds = rec.bounds if len(rec.bounds) > 2 else None
    act = None if a_spec.granularity == "token" else _act_table(rec, a_spec, cfg.a_observer, cal.steps, cfg.per_step)
    s, z = weight_qparams(layer.weight.detach(), w_spec, cfg.w_observer, splits.get(name))
    aq = ActQuant(a_spec, rec.dim, act, bounds, cal.sigmas)
    if cfg.adaround_iters and rec.inputs:
        x_fp = torch.cat([x for _, x in rec.inputs])
        x_q = torch.cat([_at_step(aq, st, x, cal) for st, x in rec.inputs])
        weight = adaround(layer, s, z, w_spec, x_fp, x_q, iters=cfg.adaround_iters)
    else:
        weight = fake_quant(layer.weight.detach(), s, z, w_spec)
    return {"weight": weight, "act": act, "bounds": bounds, "dim": rec.dim, "bits": (w_spec.bits, a_spec.bits),
            "a_spec": a_spec, "w_spec": w_spec}


def _at_step(aq: ActQuant, step: int, x, cal: Calibration):
    with at_step(cal.num_steps, step, cal.sigmas[step]):
        return aq(x)


def _hooks(state: dict, sigmas) -> dict[str, QuantHook]:
    return {n: QuantHook(st["weight"], ActQuant(st["a_spec"], st["dim"], st["act"], st["bounds"], sigmas))
            for n, st in state["layers"].items()}


def prepare_ptq(denoiser, config: PTQConfig, run: Run, keep: int = 4) -> PTQConfig:
    """Calibrate on ``run`` and return ``config`` with its ``state`` (quantized weights, scale tables)."""
    layers = quant_layers(denoiser, config.exclude)
    if not layers:
        raise TypeError(f"no Linear/Conv2d layers to quantize in {type(network(denoiser)).__name__}")
    splits = skip_splits(denoiser) if config.split else {}
    bounds = {n: (0, s, layers[n].in_channels) for n, s in splits.items() if n in layers}
    cal = calibrate(denoiser, run, layers, bounds, config.scheme, keep)
    high: set[str] = set()
    if config.mixed_fraction > 0:
        def hook_for(n):
            st = _layer_state(n, layers[n], dataclasses.replace(config, adaround_iters=0), cal, splits, False)
            return _hooks({"layers": {n: st}}, cal.sigmas)[n]
        scores = sensitivity(network(denoiser), layers, hook_for, cal)
        high = most_sensitive(scores, config.mixed_fraction)
    if config.first_last:
        high |= cal.first_and_last()
    blocks = recon_blocks(network(denoiser)) if config.reconstruct == "block" and config.adaround_iters else {}
    inside = {n for n in layers if any(n.startswith(b + ".") for b in blocks)}
    rtn = dataclasses.replace(config, adaround_iters=0)
    state = {"layers": {n: _layer_state(n, m, rtn if n in inside else config, cal, splits, n in high)
                        for n, m in layers.items()},
             "sigmas": cal.sigmas, "steps": cal.steps, "ptqd": None}
    if blocks:
        _reconstruct_blocks(denoiser, blocks, layers, state, config, cal, splits)
    if config.ptqd:
        with _attach(denoiser, state, None):
            state["ptqd"] = calibrate_correction(network(denoiser), cal)
        state["ptqd_gains"] = {st: x0_gain(denoiser, float(cal.sigmas[st])) for st in state["ptqd"]} \
            if config.ptqd_variance else {}
    return dataclasses.replace(config, state=state)


def recon_blocks(net) -> dict[str, torch.nn.Module]:
    """BRECQ's reconstruction units: the elements of the network's top-level ModuleLists (UNet input /
    output blocks, DiT blocks) and its middle block."""
    out = {}
    for name, child in net.named_children():
        if isinstance(child, torch.nn.ModuleList):
            out.update({f"{name}.{i}": m for i, m in enumerate(child)})
        elif name == "middle_block":
            out[name] = child
    return out


class _BlockSpy(ModelHook):
    """Records a block's inputs and full-precision output (with the step and σ they belong to)."""

    name = "brecq-spy"

    def __init__(self, records: list, where: dict):
        self.records, self.where = records, where

    def __call__(self, module, call_next, *args, **kwargs):
        y = call_next(*args, **kwargs)
        self.records.append((self.where["step"], self.where["sigma"], args, kwargs, y.detach()))
        return y


def _reconstruct_blocks(denoiser, blocks: dict, layers: dict, state: dict, cfg: PTQConfig, cal: Calibration,
                        splits: dict) -> None:
    """BRECQ over every block in turn, on its recorded full-precision inputs; writes the learned
    weights into ``state``."""
    net = network(denoiser)
    records: dict[str, list] = {b: [] for b in blocks}
    where: dict = {}
    spies = [(m, _BlockSpy(records[b], where)) for b, m in blocks.items()]
    with attach("brecq-spy", spies), torch.no_grad():
        for step, sigma, args, _ in cal.net_io:
            where.update(step=step, sigma=sigma)
            net(*args)
    hooks = _hooks(state, state["sigmas"])
    mods = dict(net.named_modules())

    def in_step(block, step, sigma, args, kwargs):
        def run():
            with at_step(cal.num_steps, step, sigma):
                return block(*args, **kwargs)
        return run

    with attach("quant", [(mods[n], h) for n, h in hooks.items()]):
        for b, block in blocks.items():
            names = [n for n in layers if n.startswith(b + ".")]
            if not names or not records[b]:
                continue
            rounding = {}
            for n in names:
                st, w = state["layers"][n], layers[n].weight.detach()
                s, z = weight_qparams(w, st["w_spec"], cfg.w_observer, splits.get(n))
                rounding[n] = Rounding(w, s, z, st["w_spec"])
            io = [(in_step(block, st, sg, a, k), y) for st, sg, a, k, y in records[b]]
            for n, w in brecq(block, hooks, rounding, io, iters=cfg.adaround_iters).items():
                state["layers"][n]["weight"] = w


def _attach(denoiser, state: dict, stats):
    mods = dict(network(denoiser).named_modules())
    pairs = [(mods[n], h) for n, h in _hooks(state, state["sigmas"]).items()]
    if state.get("ptqd"):
        pairs.append((network(denoiser), PTQDHook(state["ptqd"], state["sigmas"], state.get("ptqd_gains"))))
    return attach("quant", pairs, stats=stats)


def apply_ptq(denoiser, config: PTQConfig):
    """Attach the calibrated quantizers (``config.state``) to ``denoiser``'s network; the handle removes them."""
    return _attach(denoiser, config.state, QuantStats.of(denoiser, config.state))


def check_quantizable(denoiser) -> str | None:
    return None if quant_layers(denoiser) else "it has no Linear/Conv2d layers to quantize"


PAPER = "Q-Diffusion (Li et al. 2023), PTQ4DM (Shang et al. 2023), TDQ (So et al. 2023), PTQD (He et al. 2023)"
register(Technique("ptq", "quant", PTQConfig, apply_ptq, check_quantizable, needs=("state",),
                   prepare_fn=lambda d, c, r, **kw: prepare_ptq(d, c, r, **kw),
                   eager=lambda n: PTQConfig(w_bits=4, a_bits=8), paper=PAPER))
register(Technique("ptq-naive", "quant", NaivePTQConfig, apply_ptq, check_quantizable, needs=("state",),
                   prepare_fn=lambda d, c, r, **kw: prepare_ptq(d, c, r, **kw),
                   eager=lambda n: NaivePTQConfig(w_bits=4, a_bits=8), paper="round-to-nearest min-max PTQ"))


_check = check_quantizable    # the old private name
