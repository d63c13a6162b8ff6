"""Helpers for tests/test_peers.py: load k-diffusion's ``sampling.py`` without its package,
shared noise streams, and trajectory comparison.

k-diffusion's ``k_diffusion/__init__.py`` imports its models, which need torchvision and
skimage (not dependencies of effdiff). Its ``sampling.py`` needs only scipy, torch, torchsde,
torchdiffeq, tqdm and ``k_diffusion.utils.append_dims``. ``load_k_sampling`` therefore runs
the installed ``sampling.py`` file inside a stub package ``_kdiff_shim`` (so a real
``k_diffusion`` in ``sys.modules`` is never shadowed) whose ``utils`` holds only
``append_dims``. Nothing of k-diffusion is copied here: the shim is the one line it imports.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

_SHIM = "_kdiff_shim"


def _append_dims(x, target_dims):
    """``k_diffusion.utils.append_dims``'s contract: trailing singleton dims up to target_dims."""
    return x[(...,) + (None,) * (target_dims - x.ndim)]


def load_k_sampling():
    """The installed ``k_diffusion/sampling.py`` as a module, or skip the calling test."""
    if f"{_SHIM}.sampling" in sys.modules:
        return sys.modules[f"{_SHIM}.sampling"]
    spec = importlib.util.find_spec("k_diffusion")   # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("k-diffusion not installed (pip install --no-deps k-diffusion torchsde torchdiffeq trampoline)")
    pytest.importorskip("torchsde", reason="k-diffusion's sampling.py needs torchsde")
    pytest.importorskip("torchdiffeq", reason="k-diffusion's sampling.py needs torchdiffeq")
    path = Path(list(spec.submodule_search_locations)[0]) / "sampling.py"
    if not path.is_file():
        pytest.skip(f"k-diffusion installed without sampling.py ({path})")
    pkg = types.ModuleType(_SHIM)
    pkg.__path__ = []                                  # a package that finds no submodules on disk
    utils = types.ModuleType(f"{_SHIM}.utils")
    utils.append_dims = _append_dims
    pkg.utils = utils
    sys.modules[_SHIM], sys.modules[f"{_SHIM}.utils"] = pkg, utils
    mod_spec = importlib.util.spec_from_file_location(f"{_SHIM}.sampling", path)
    mod = importlib.util.module_from_spec(mod_spec)
    sys.modules[mod_spec.name] = mod
    mod_spec.loader.exec_module(mod)
    return mod


class Stream:
    """A seeded stream of N(0, I) draws of a fixed shape (float64): two streams with the same
    seed hand the peer and effdiff the same noise, draw by draw. Accepts any arguments, so it
    serves as k-diffusion's ``noise_sampler(sigma, sigma_next)`` and as effdiff's ``noise(like)``."""

    def __init__(self, shape, seed: int):
        self.shape, self.gen = tuple(shape), torch.Generator().manual_seed(seed)
        self.draws = 0

    def __call__(self, *args):
        self.draws += 1
        return torch.randn(self.shape, generator=self.gen, dtype=torch.float64)


def rel(a, b) -> float:
    """Relative error ||a - b|| / ||b||."""
    return float((a - b).norm() / b.norm())


def max_rel(ours, theirs) -> float:
    """Largest relative error over two equally long lists of states."""
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    return max(rel(a, b) for a, b in zip(ours, theirs))
