"""Feature caching (survey §4.3): each method is a dataclass config plus an ``apply_*`` function
that attaches reversible hooks (all-or-nothing) and returns a ``Handle``; each registers itself
in ``effdiff.techniques``.

    h = apply_deepcache(den, DeepCacheConfig(interval=3))
    x = ed.sample(den, x, sigmas, solver="ddim")
    h.remove()                       # the exact original model again
"""
from .policies import every, nonuniform_steps, StepSet
from .deepcache import DeepCacheConfig, apply_deepcache
from .fora import FORAConfig, apply_fora
from .block_caching import BlockCachingConfig, apply_block_caching, calibrate_block_caching
from .delta_dit import DeltaDiTConfig, apply_delta_dit
from .adaptive import AdaptiveCacheConfig, apply_adaptive_cache
from .nirvana import ApproximateCache, NirvanaConfig, apply_nirvana, cached_sample
from .tgate import TGATEConfig, apply_tgate
from .l2c import L2CConfig, Router, apply_l2c, l2c_loss, train_l2c_router

__all__ = ["every", "nonuniform_steps", "StepSet", "DeepCacheConfig", "apply_deepcache", "FORAConfig", "apply_fora",
           "BlockCachingConfig", "apply_block_caching", "calibrate_block_caching", "DeltaDiTConfig",
           "apply_delta_dit", "AdaptiveCacheConfig", "apply_adaptive_cache", "ApproximateCache", "NirvanaConfig",
           "apply_nirvana", "cached_sample", "TGATEConfig", "apply_tgate", "L2CConfig", "Router", "apply_l2c",
           "l2c_loss", "train_l2c_router"]
