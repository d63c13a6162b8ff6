"""Feature caching (survey §4.3): each method is a dataclass config plus an ``apply_*`` function
that attaches reversible hooks and returns a ``Handle``.

    h = apply_deepcache(den, DeepCacheConfig(interval=3))
    x = ed.sample(den, x, sigmas, solver="ddim")
    h.remove()                       # the exact original model again
"""
from .policies import every, nonuniform_steps, StepSet
from .deepcache import DeepCacheConfig, apply_deepcache
from .fora import FORAConfig, apply_fora

__all__ = ["every", "nonuniform_steps", "StepSet", "DeepCacheConfig", "apply_deepcache", "FORAConfig", "apply_fora"]
