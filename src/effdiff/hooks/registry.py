"""Per-instance hook chains (the diffusers ``hooks/`` design, without closures).

``add_hook(module, hook)`` installs a ``HookRegistry`` on that module instance: the instance's
``forward`` attribute becomes the registry's bound ``forward``, which runs the named hooks in
order around the class's original forward. ``remove_hook`` takes one out by name; when the
last goes, the instance attribute is deleted and the module is exactly what it was.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

_ATTR = "_effdiff_hooks"


class ModelHook:
    """Base class. Subclasses override ``__call__``."""

    name: str = "hook"

    def __call__(self, module: nn.Module, call_next: Callable, *args, **kwargs) -> Any:
        return call_next(*args, **kwargs)


class HookRegistry:
    """The ordered, named hooks of one module instance."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.hooks: dict[str, ModelHook] = {}
        self._had_instance_forward = "forward" in module.__dict__
        self._original = module.forward          # bound method of the class (or a prior override)

    def forward(self, *args, **kwargs):
        chain = list(self.hooks.values())

        def run(i: int, *a, **k):
            if i == len(chain):
                return self._original(*a, **k)
            return chain[i](self.module, lambda *aa, **kk: run(i + 1, *aa, **kk), *a, **k)

        return run(0, *args, **kwargs)

    def add(self, name: str, hook: ModelHook) -> None:
        if name in self.hooks:
            raise ValueError(f"a hook named {name!r} is already attached to this {type(self.module).__name__}")
        self.hooks[name] = hook
        if len(self.hooks) == 1:
            self.module.forward = self.forward

    def remove(self, name: str) -> None:
        if name not in self.hooks:
            raise KeyError(f"no hook named {name!r} on this {type(self.module).__name__}; attached: {list(self.hooks)}")
        del self.hooks[name]
        if not self.hooks:
            if self._had_instance_forward:
                self.module.forward = self._original
            else:
                del self.module.forward
            delattr(self.module, _ATTR)


def add_hook(module: nn.Module, hook: ModelHook, name: str | None = None) -> str:
    reg = module.__dict__.get(_ATTR)
    if reg is None:
        reg = HookRegistry(module)
        object.__setattr__(module, _ATTR, reg)
    name = name or hook.name
    reg.add(name, hook)
    return name


def remove_hook(module: nn.Module, name: str) -> None:
    reg = module.__dict__.get(_ATTR)
    if reg is None:
        raise KeyError(f"{type(module).__name__} has no hooks")
    reg.remove(name)


def hooks_of(module: nn.Module) -> dict[str, ModelHook]:
    reg = module.__dict__.get(_ATTR)
    return dict(reg.hooks) if reg else {}


class Handle:
    """What every ``apply_*`` returns: ``handle.remove()`` detaches all its hooks (also a context
    manager). ``handle.store``: its cache (``store.nbytes()``) or None; ``handle.stats``: its
    typed counters (``CacheStats``, ``ExitStats``). ``routes_requests``: its ``sample`` does more
    than ``ed.sample`` (a request-level cache such as NIRVANA)."""

    routes_requests = False

    def __init__(self, name: str, attached: list[tuple[nn.Module, str]], store=None, stats=None,
                 on_remove: Callable | None = None):
        self.name, self.attached, self.store, self.stats = name, attached, store, stats
        self._on_remove = on_remove

    def sample(self, denoiser, x, sigmas, solver="euler", cond=None, **kw):
        """One generation with this technique active: ``ed.sample`` (request-level techniques
        such as NIRVANA route it through their cache)."""
        from ..sampling import sample
        return sample(denoiser, x, sigmas, solver, cond, **kw)

    def remove(self) -> None:
        for module, hook_name in reversed(self.attached):
            if hook_name in hooks_of(module):
                remove_hook(module, hook_name)
        self.attached = []
        if self.store is not None:
            self.store.clear()
        if self._on_remove is not None:
            self._on_remove()
            self._on_remove = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


def attach(name: str, hooks: list[tuple[nn.Module, ModelHook]], store=None, stats=None) -> Handle:
    """Attach every ``(module, hook)`` under ``name`` (all-or-nothing: a clash is reported before
    anything is attached, and any failure detaches what was attached, then re-raises) and return
    their ``Handle``. Also the way to hook temporarily: ``with attach(...): run``."""
    clash = [type(m).__name__ for m, _ in hooks if name in hooks_of(m)]
    if clash:
        raise ValueError(f"a hook named {name!r} is already attached to {len(clash)} of these modules "
                         f"({clash[0]}, ...); remove that handle first")
    if len({id(m) for m, _ in hooks}) != len(hooks):
        raise ValueError(f"{name!r} would attach two hooks to one module")
    attached: list[tuple[nn.Module, str]] = []
    try:
        for module, hook in hooks:
            attached.append((module, add_hook(module, hook, name)))
    except BaseException:
        for module, hook_name in reversed(attached):
            remove_hook(module, hook_name)
        raise
    return Handle(name, attached, store, stats)
