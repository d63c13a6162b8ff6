"""What produced a number: CPU model (or GPU), cores, torch threads, versions (now in ``effdiff.io``)."""
from __future__ import annotations

from ..io import cpu_name, machine

__all__ = ["cpu_name", "machine"]
