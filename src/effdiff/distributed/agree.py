"""Every rank must run the same configuration: ``agree(config)`` all-gathers a hash of it and
raises a ValueError naming the ranks and keys that differ (instead of a hang or silently
different samples)."""
from __future__ import annotations

import hashlib
import json

import torch
import torch.distributed as dist


def config_hash(config) -> int:
    """A 63-bit hash of ``config`` (JSON with sorted keys; other objects by ``str``)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def _diff(configs: list) -> str:
    """Which keys differ between rank 0's config and the others'."""
    base = configs[0]
    if not all(isinstance(c, dict) for c in configs):
        return ", ".join(f"rank {r}: {c!r}" for r, c in enumerate(configs))
    keys = sorted({k for c in configs for k in c if any(c.get(k) != base.get(k) for c in configs)})
    return "; ".join(f"{k}: " + ", ".join(f"rank {r}={c.get(k)!r}" for r, c in enumerate(configs)) for k in keys)


def agree(config, group=None) -> int:
    """Check that all ranks of ``group`` pass the same ``config``; returns its hash."""
    h = config_hash(config)
    if not dist.is_initialized() or dist.get_world_size(group) == 1:
        return h
    device = "cuda" if dist.get_backend(group) == "nccl" else "cpu"
    hashes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(dist.get_world_size(group))]
    dist.all_gather(hashes, torch.tensor([h], dtype=torch.int64, device=device), group=group)
    if len({int(t) for t in hashes}) > 1:
        configs = [None] * len(hashes)
        dist.all_gather_object(configs, config, group=group)
        raise ValueError(f"ranks disagree on the configuration ({_diff(configs)}); "
                         "every rank must be started with the same arguments")
    return h
