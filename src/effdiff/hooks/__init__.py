"""The model-hook registry: named, reversible hooks attached to module instances.

A hook is middleware around one module's forward: ``hook(module, call_next, *args, **kwargs)``
either calls ``call_next`` (compute) or returns something else (a cached output). Hooks read
the sampling loop context (``effdiff.current_context()``: step, stage, branch) rather than
guessing the step from timestep values. Removing every hook leaves the exact original module.
"""
from .registry import ModelHook, HookRegistry, add_hook, remove_hook, hooks_of, remove_all_hooks, Handle
from .cache import CacheStore, CacheHook, SiteCache, SpanCache

__all__ = ["ModelHook", "HookRegistry", "add_hook", "remove_hook", "hooks_of", "remove_all_hooks", "Handle",
           "CacheStore", "CacheHook", "SiteCache", "SpanCache"]
