"""The model-hook registry: named, reversible hooks attached to module instances.

A hook is middleware around one module's forward: ``hook(module, call_next, *args, **kwargs)``
either calls ``call_next`` (compute) or returns something else (a cached output). Hooks read
the loop context (``effdiff.context.current_context()``: step, stage, branch, generation)
rather than guessing the step from timestep values. ``attach(name, [(module, hook), ...])``
is all-or-nothing and returns a ``Handle``; removing it leaves the exact original modules.
"""
from .registry import ModelHook, HookRegistry, add_hook, remove_hook, hooks_of, attach, Handle
from .stats import Stats, CacheStats, ExitStats
from .cache import CacheStore, SiteCache, SpanCache

__all__ = ["ModelHook", "HookRegistry", "add_hook", "remove_hook", "hooks_of", "attach", "Handle",
           "Stats", "CacheStats", "ExitStats", "CacheStore", "SiteCache", "SpanCache"]
