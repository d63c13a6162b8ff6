"""Where a model runs: ``resolve("cuda")`` -> ``torch.device`` or a clear ``DeviceError`` (CUDA asked
for and absent, an unknown device string) before any work starts."""
from __future__ import annotations

import torch

from .errors import EffdiffError


class DeviceError(EffdiffError, ValueError):
    """A device that this machine does not have."""


def resolve(device) -> torch.device:
    """``device`` ("cpu", "cuda", "cuda:1", "mps" or a ``torch.device``) checked against this machine."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r}: CUDA is not available on this machine (torch {torch.__version__}"
                              f"{', a CPU-only build' if torch.version.cuda is None else ''}); use --device cpu")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif d.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError(f"device {device!r}: MPS is not available on this machine; use --device cpu")
    elif d.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {device!r}: effdiff runs on cpu, cuda or mps")
    return d
