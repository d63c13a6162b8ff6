"""Cost metrics: network evaluations, MACs, latency, peak memory, bytes.

Speed is only meaningful as a ratio measured in one run with threads pinned (see
DESIGN.md); these helpers measure, `effdiff bench` compares.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["macs_per_sample", "param_bytes", "latency", "pinned_threads", "peak_memory"]


def _first_tensor(args) -> torch.Tensor | None:
    """The first tensor among args (looking one level into lists and tuples)."""
    for a in args:
        if isinstance(a, torch.Tensor):
            return a
        if isinstance(a, (list, tuple)):
            t = _first_tensor(a)
            if t is not None:
                return t
    return None


@torch.no_grad()
def macs_per_sample(fn, *example_args, **example_kwargs) -> float:
    """Multiply-accumulates per sample of fn(*example_args): FlopCounterMode FLOPs / 2 / batch size.

    The batch size is the first dimension of the first tensor argument. Only ops that
    torch's flop counter knows (matmuls, convolutions, attention) are counted; elementwise
    ops and bias adds are not.
    """
    x = _first_tensor(example_args)
    if x is None or x.ndim < 1 or x.shape[0] < 1:
        raise ValueError("macs_per_sample needs a tensor argument with a batch dimension first")
    with FlopCounterMode(display=False) as counter:
        fn(*example_args, **example_kwargs)
    return counter.get_total_flops() / 2 / x.shape[0]


def param_bytes(module: torch.nn.Module, buffers: bool = True) -> int:
    """Storage bytes of a module's parameters (and buffers, where quantized weights often live).

    Shared tensors are counted once.
    """
    tensors = list(module.parameters())
    if buffers:
        tensors += list(module.buffers())
    seen, total = set(), 0
    for t in tensors:
        key = (t.device, t.data_ptr()) if t.numel() else id(t)
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


def _sync() -> None:
    """Wait for queued CUDA work so wall-clock timings include it."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def latency(fn, repeats: int = 5, warmup: int = 1) -> dict:
    """Wall-clock seconds of fn(): dict(median_s, min_s, all) over `repeats` calls after `warmup` calls."""
    if repeats < 1 or warmup < 0:
        raise ValueError("need repeats >= 1 and warmup >= 0")
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "all": times}


@contextmanager
def pinned_threads(n: int):
    """Run the block with torch.set_num_threads(n); restore the previous count afterwards."""
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cpu_peak_bytes(fn) -> int:
    """Peak of live CPU tensor bytes allocated during fn, from the profiler's allocation events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        if e.device_type() == torch.autograd.DeviceType.CPU:
            live += e.nbytes()
            peak = max(peak, live)
    return peak


def peak_memory(fn, device: str | torch.device | None = None) -> int:
    """Peak extra tensor memory (bytes) that fn() needs above what was allocated before it.

    CUDA: torch.cuda.max_memory_allocated during fn minus memory_allocated before it.
    CPU: torch profiler allocation events (profile_memory=True); the running sum of
    allocations minus frees of torch tensors made during fn, maximised over time. Neither
    counts allocator caching, Python objects or library workspaces outside torch's
    allocator; on CPU the profiler adds overhead, so do not time the same call.
    """
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        _sync()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        _sync()
        return int(torch.cuda.max_memory_allocated(device) - before)
    if device is not None and device.type != "cpu":
        raise ValueError(f"peak_memory supports cpu and cuda devices, got {device}")
    return int(_cpu_peak_bytes(fn))
