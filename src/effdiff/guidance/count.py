"""Honest evaluation counts: the driver's NFE counts denoiser *calls* (``ed.CFG``'s batched
``[cond; null]`` call counts one), but its cost is two network evaluations per sample. ``Evaluations``
counts the rows that actually reach the network, so evaluations per sample = rows / samples: a guided
step counts two, a step with one evaluation counts one, whatever wrappers sit in between.

    with Evaluations(den) as ev:
        ed.sample(ed.CFG(den, 2.0), x, sigmas, "euler", cond=labels)
    ev.per_sample(len(x))        # 2 x steps
"""
from __future__ import annotations

from torch import nn

from ..hooks import ModelHook, attach
from ..sites import network


def network_of(den) -> nn.Module:
    """The network inside a denoiser (``sites.network``: through ``ed.CFG``, latent and technique wrappers)."""
    net = network(den)
    if not isinstance(net, nn.Module):
        raise TypeError(f"no network (nn.Module) found inside {type(den).__name__}")
    return net


class _Rows(ModelHook):
    def __init__(self):
        self.rows, self.calls = 0, 0

    def __call__(self, module, call_next, *args, **kwargs):
        self.rows += int(args[0].shape[0])
        self.calls += 1
        return call_next(*args, **kwargs)


class Evaluations:
    """Context manager counting network rows (``rows``) and calls (``calls``) of ``den``'s network."""

    def __init__(self, den):
        self.net, self._hook, self._handle = network_of(den), _Rows(), None

    def __enter__(self) -> "Evaluations":
        self._handle = attach("evaluation-counter", [(self.net, self._hook)])
        return self

    def __exit__(self, *exc):
        self._handle.remove()
        return False

    @property
    def rows(self) -> int:
        return self._hook.rows

    @property
    def calls(self) -> int:
        return self._hook.calls

    def per_sample(self, n: int) -> float:
        """Network evaluations per sample over everything counted (``n`` samples generated)."""
        return self.rows / n
