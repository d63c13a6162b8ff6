"""What the model-parallel methods share: a structural copy of the network that shares its
parameters, a base module that knows the loop step (warm-up, then stale) and forgets the
previous generation's activations, and ``with_net`` to put the parallel network into a copy of
the denoiser wrapper."""
from __future__ import annotations

import copy

from torch import nn

from ..context import current_context


def shared_copy(net: nn.Module) -> nn.Module:
    """A structural copy of ``net`` that shares its parameters and buffers."""
    memo = {id(t): t for t in list(net.parameters()) + list(net.buffers())}
    return copy.deepcopy(net, memo)


class ParallelNet(nn.Module):
    """Base: ``inner`` (the rewired copy) runs with ``self.stale`` set per evaluation: False for the
    first ``warmup`` steps of a generation (loop context step) and outside ``ed.sample``."""

    def __init__(self, inner: nn.Module, stale_mode: bool, warmup: int):
        super().__init__()
        self.inner, self.stale_mode, self.warmup = inner, stale_mode, warmup
        self.generation, self.stale = None, False

    def reset(self) -> None:
        """Forget activations kept from the previous generation (subclasses)."""

    def begin(self, stale: bool) -> None:
        """Called before each evaluation with its mode (subclasses pass it to their layers)."""

    def forward(self, x, *args, **kwargs):
        ctx = current_context()
        gen = None if ctx is None else ctx.generation
        if gen != self.generation:
            self.reset()
            self.generation = gen
        self.stale = self.stale_mode and ctx is not None and ctx.step >= self.warmup
        self.begin(self.stale)
        return self.inner(x, *args, **kwargs)


def with_net(denoiser, net: nn.Module):
    """A shallow copy of a ``Denoiser``-like wrapper (``.net``) whose network is ``net``."""
    if not isinstance(getattr(denoiser, "net", None), nn.Module):
        raise TypeError("expected a denoiser wrapping a network in .net (as zoo.load returns), "
                        f"got {type(denoiser).__name__}")
    out = copy.copy(denoiser)
    out._modules = dict(denoiser._modules)
    out.__dict__.pop("_memo", None)
    out.net = net
    return out
