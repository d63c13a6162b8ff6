"""Systems switches as Techniques (family "systems"): how the same network is executed, not what
it computes. Each attaches to the network inside a denoiser and is removed without a trace:

- ``sdpa``: scaled-dot-product attention backend (math, flash, efficient, cudnn; Dao et al. 2022)
- ``compile``: ``torch.compile`` of the network (Ansel et al. 2024, PyTorch 2)
- ``channels-last``: NHWC memory format for convolutions
- ``autocast``: bf16 / fp16 mixed precision (Micikevicius et al. 2018)
- ``threads``: intra-op CPU threads during the network call
- ``cuda-graphs``: capture once per input shape, replay (GPU only)

    with T.get("autocast").apply(den, dtype="bfloat16") as h:
        x = h.sample(den, x_T, sigmas, "ddim", cond=labels)
    h.stats.calls

``effdiff bench --suite systems`` measures each one's speed-up and max output deviation.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable
import warnings

import torch
from torch import nn

from .hooks import Handle, ModelHook, Stats, attach
from .metrics.cost import pinned_threads
from .models.layers import CrossAttention, SelfAttention
from .sites import network
from .techniques import Technique, register


@dataclass
class SystemsStats(Stats):
    """``calls``: network evaluations run under the switch; ``captures``: CUDA graphs captured."""
    calls: int = 0
    captures: int = 0


class ContextHook(ModelHook):
    """Runs the network call inside ``enter()`` (a context manager), inputs through ``prepare``."""

    def __init__(self, enter: Callable, stats: SystemsStats, prepare: Callable | None = None):
        self.enter, self.stats, self.prepare = enter, stats, prepare

    def __call__(self, module, call_next, *args, **kwargs):
        self.stats.add(calls=1)
        if self.prepare is not None:
            args = self.prepare(args)
        with self.enter():
            return call_next(*args, **kwargs)


def _net(den) -> nn.Module:
    net = network(den)
    if not isinstance(net, nn.Module) or next(net.parameters(), None) is None:
        raise TypeError(f"no torch network with parameters inside {type(den).__name__}")
    return net


def _has_net(den) -> str | None:
    net = network(den)
    if not isinstance(net, nn.Module) or next(net.parameters(), None) is None:
        return f"{type(den).__name__} holds no torch network with parameters"
    return None


def _hooked(name: str, den, enter: Callable, prepare=None, on_remove=None) -> Handle:
    stats = SystemsStats()
    h = attach(name, [(_net(den), ContextHook(enter, stats, prepare))], stats=stats)
    return Handle(name, h.attached, None, stats, on_remove)


# -- scaled-dot-product attention backend ------------------------------------------------------
@dataclass
class SDPAConfig:
    """backends: torch SDPA backends to allow ("math", "flash", "efficient", "cudnn")."""
    backends: tuple[str, ...] = ("flash",)


BACKENDS = {"math": "MATH", "flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION"}


def apply_sdpa(den, config: SDPAConfig) -> Handle:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    unknown = [b for b in config.backends if b not in BACKENDS]
    if unknown or not config.backends:
        raise ValueError(f"unknown SDPA backend(s) {unknown or '(none given)'}; known: {', '.join(BACKENDS)}")
    chosen = [getattr(SDPBackend, BACKENDS[b]) for b in config.backends]
    return _hooked("sdpa", den, lambda: sdpa_kernel(chosen))


def _check_attention(den) -> str | None:
    why = _has_net(den)
    if why is None and not any(isinstance(m, (SelfAttention, CrossAttention, nn.MultiheadAttention))
                               for m in network(den).modules()):
        return "the network has no attention layers"
    return why


# -- torch.compile --------------------------------------------------------------------------
@dataclass
class CompileConfig:
    """Options of ``torch.compile`` (mode None = "default")."""
    mode: str | None = None
    dynamic: bool | None = None
    fullgraph: bool = False


def apply_compile(den, config: CompileConfig) -> Handle:
    net = _net(den)
    if getattr(net, "_compiled_call_impl", None) is not None:
        raise ValueError("this network is already compiled")
    net.compile(mode=config.mode, dynamic=config.dynamic, fullgraph=config.fullgraph)

    def undo():
        net._compiled_call_impl = None
    return Handle("compile", [], None, SystemsStats(), undo)   # no hook: it would break the graph


def _check_compile(den) -> str | None:
    why = _has_net(den)
    if why is None and not hasattr(torch, "compile"):
        return "this torch has no torch.compile"
    return why


# -- channels_last --------------------------------------------------------------------------
@dataclass
class ChannelsLastConfig:
    """NHWC for the network's 4-D weights and its image input."""
    inputs: bool = True


def apply_channels_last(den, config: ChannelsLastConfig) -> Handle:
    net = _net(den)

    def prepare(args):
        x = args[0]
        if config.inputs and torch.is_tensor(x) and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return (x, *args[1:])
    net.to(memory_format=torch.channels_last)
    return _hooked("channels-last", den, nullcontext, prepare,
                   on_remove=lambda: net.to(memory_format=torch.contiguous_format))


def _check_conv(den) -> str | None:
    why = _has_net(den)
    if why is None and not any(isinstance(m, nn.Conv2d) for m in network(den).modules()):
        return "the network has no 2-D convolutions"
    return why


# -- autocast -------------------------------------------------------------------------------
@dataclass
class AutocastConfig:
    """dtype: "bfloat16" or "float16" for the network's matmuls and convolutions."""
    dtype: str = "bfloat16"


def native_low_precision(device: str = "cpu") -> str | None:
    """The autocast dtype this machine computes natively on ``device`` ("bfloat16" on a CPU with
    AVX512-BF16 or AMX, "bfloat16" / "float16" on CUDA), or None where autocast would emulate it
    (an AVX2 CPU runs bf16 autocast 5-20x slower than fp32: docs/distributed.md)."""
    if device == "cuda":
        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float16"
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return "bfloat16" if any(c is not None and c() for c in checks) else None


def apply_autocast(den, config: AutocastConfig) -> Handle:
    if config.dtype not in ("bfloat16", "float16"):
        raise ValueError(f"autocast dtype must be 'bfloat16' or 'float16', got {config.dtype!r}")
    net = _net(den)
    device = next(net.parameters()).device.type
    dtype = getattr(torch, config.dtype)
    if device == "cpu" and native_low_precision(device) != config.dtype:
        warnings.warn(f"autocast {config.dtype} on this CPU is emulated (no "
                      f"{'AVX512-BF16 or AMX' if config.dtype == 'bfloat16' else 'native float16'}): it runs several "
                      "times slower than float32 here (docs/distributed.md). A plan that keeps autocast was made on a "
                      "machine that computes it natively: re-plan on this one, or sample without the switch",
                      EmulatedPrecisionWarning, stacklevel=3)
    return _hooked("autocast", den, lambda: torch.autocast(device, dtype=dtype))


class EmulatedPrecisionWarning(UserWarning):
    """autocast asked for a dtype this CPU emulates (slower than float32, not faster)."""


# -- threads --------------------------------------------------------------------------------
@dataclass
class ThreadsConfig:
    """num_threads: intra-op threads while the network runs (CPU)."""
    num_threads: int = 1


def apply_threads(den, config: ThreadsConfig) -> Handle:
    n = config.num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"num_threads must be a positive integer, got {n!r}")
    return _hooked("threads", den, lambda: pinned_threads(n))


# -- CUDA graphs ----------------------------------------------------------------------------
@dataclass
class CUDAGraphsConfig:
    """warmup: eager calls on a side stream before capturing a graph for an input signature."""
    warmup: int = 3


@dataclass
class _Graph:
    graph: object
    inputs: list
    output: torch.Tensor


class CUDAGraphHook(ModelHook):
    """One CUDA graph per input signature (shapes, dtypes, which arguments are None): inputs are
    copied into the captured buffers and the graph replayed; the output is cloned out."""

    def __init__(self, config: CUDAGraphsConfig, stats: SystemsStats):
        self.config, self.stats, self.graphs = config, stats, {}

    @staticmethod
    def key(args) -> tuple:
        return tuple((tuple(a.shape), a.dtype) if torch.is_tensor(a) else repr(a) for a in args)

    def capture(self, call_next, args) -> _Graph:
        static = [a.clone() if torch.is_tensor(a) else a for a in args]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.config.warmup):
                call_next(*static)
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = call_next(*static)
        self.stats.add(captures=1)
        return _Graph(g, static, out)

    def __call__(self, module, call_next, *args, **kwargs):
        if kwargs:
            raise TypeError("cuda-graphs replays positional calls only")
        self.stats.add(calls=1)
        k = self.key(args)
        if k not in self.graphs:
            self.graphs[k] = self.capture(call_next, args)
        g = self.graphs[k]
        for dst, src in zip(g.inputs, args):
            if torch.is_tensor(dst):
                dst.copy_(src)
        g.graph.replay()
        return g.output.clone()


def apply_cuda_graphs(den, config: CUDAGraphsConfig) -> Handle:
    why = _check_cuda(den)
    if why is not None:
        raise ValueError(f"cuda-graphs: {why}")
    stats = SystemsStats()
    hook = CUDAGraphHook(config, stats)
    h = attach("cuda-graphs", [(_net(den), hook)], stats=stats)
    return Handle("cuda-graphs", h.attached, None, stats, hook.graphs.clear)


def _check_cuda(den) -> str | None:
    why = _has_net(den)
    if why is not None:
        return why
    if not torch.cuda.is_available():
        return "needs CUDA (torch.cuda.is_available() is False)"
    if next(network(den).parameters()).device.type != "cuda":
        return "needs CUDA: the network is on the CPU; move it to a CUDA device first"
    return None


for _t in (
        Technique("sdpa", "systems", SDPAConfig, apply_sdpa, _check_attention,
                  paper="Dao et al. 2022, FlashAttention (torch scaled_dot_product_attention backends)"),
        Technique("compile", "systems", CompileConfig, apply_compile, _check_compile,
                  paper="Ansel et al. 2024, PyTorch 2 (TorchDynamo + Inductor)"),
        Technique("channels-last", "systems", ChannelsLastConfig, apply_channels_last, _check_conv,
                  paper="PyTorch channels_last memory format (NHWC convolutions)"),
        Technique("autocast", "systems", AutocastConfig, apply_autocast, _has_net,
                  paper="Micikevicius et al. 2018, Mixed Precision Training (torch.autocast)"),
        Technique("threads", "systems", ThreadsConfig, apply_threads, _has_net,
                  paper="intra-op parallelism (torch.set_num_threads)"),
        Technique("cuda-graphs", "systems", CUDAGraphsConfig, apply_cuda_graphs, _check_cuda,
                  paper="NVIDIA CUDA Graphs (torch.cuda.CUDAGraph)")):
    register(_t)
