"""The pool hooks: task spans parented where work was submitted, worker spans where the pool
was created.

``multiprocessing.Pool`` and ``ProcessPoolExecutor`` pickle tasks in a
background thread, so the context is captured in the submitting call instead,
by wrapping the function in a ``Task``. Worker processes are stamped with the
span current when the pool was created, also for workers started later by the
pool's own threads (``maxtasksperchild``, replacing a dead worker). The
executor is patched when the program imports it, not before.
"""

from __future__ import annotations

import contextvars
import functools
import sys
from multiprocessing import pool as mp_pool
from types import ModuleType
from typing import Any

from .._child import span as _span
from .._core import names, onimport
from .._core.ids import traceparent
from .._core.spec import spec_of
from . import registry
from .targets import Task

# Set while an executor starts a worker: the executor's creation span.
_spawning_parent: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "proctrace_pool_parent", default=None
)
_active = False


def spawning_parent(proc: Any) -> str | None:
    """The traceparent a pool worker nests under, or None when ``proc`` is no pool worker."""
    return getattr(proc, names.POOL_PARENT_ATTR, None) or _spawning_parent.get()


def _here() -> str | None:
    """The traceparent of the span current in this thread (the run's main span at worst)."""
    from .._starter import carrier as _carrier  # only where a pool is used

    ids = _span.current_ids() or _carrier.fallback_parent()
    return traceparent(*ids) if ids is not None else None


def _wrap(fn: Any) -> Any:
    if isinstance(fn, Task) or not callable(fn):
        return fn
    if spec_of(fn) is None and not (registry.instrumenting() or registry.decorated()):
        return fn  # nothing to trace: leave the task exactly as it was
    parent = _here()
    if parent is None or parent.endswith("-00"):
        # Unsampled: the task records nothing, so it travels exactly as it was (no cost in the
        # worker); its logs carry the worker's span, in the same trace.
        return fn
    return Task(fn, parent)


def _stamped_process(parent: str | None, make: Any, ctx: Any, *args: Any, **kwds: Any) -> Any:
    process = make(ctx, *args, **kwds)
    setattr(process, names.POOL_PARENT_ATTR, parent)
    return process


def _patch(owner: type, name: str, make: Any) -> None:
    original = registry.original(owner, name)
    registry.patch(owner, name, functools.wraps(original)(make(original)))


def _pool_method(original: Any) -> Any:
    def method(self: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(self, mp_pool.ThreadPool):
            func = _wrap(func)
        return original(self, func, *args, **kwargs)

    return method


def install() -> None:
    """Patch Pool now and ProcessPoolExecutor once it is imported; idempotent."""
    global _active
    if _active:
        return
    _active = True

    def pool_init(original: Any) -> Any:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if not isinstance(self, mp_pool.ThreadPool):
                # The class's own Process (a subclass may override it), stamped.
                self.Process = functools.partial(_stamped_process, _here(), type(self).Process)
            original(self, *args, **kwargs)

        return __init__

    _patch(mp_pool.Pool, "__init__", pool_init)
    for name in ("apply_async", "_map_async", "imap", "imap_unordered"):
        _patch(mp_pool.Pool, name, _pool_method)
    onimport.when_imported("concurrent.futures.process", _patch_executor)


def _patch_executor(module: ModuleType) -> None:
    executor = module.ProcessPoolExecutor
    if not _active or registry.patched(executor, "submit"):
        return

    def executor_init(original: Any) -> Any:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            self._proctrace_parent = _here()
            original(self, *args, **kwargs)

        return __init__

    def executor_spawn(original: Any) -> Any:
        def _spawn_process(self: Any) -> None:
            token = _spawning_parent.set(getattr(self, "_proctrace_parent", None))
            try:
                original(self)
            finally:
                _spawning_parent.reset(token)

        return _spawn_process

    def executor_submit(original: Any) -> Any:
        def submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            # map() hands submit a partial around an already wrapped function.
            inner = fn.args[0] if isinstance(fn, functools.partial) and fn.args else None
            if not isinstance(inner, Task):
                fn = _wrap(fn)
            return original(self, fn, *args, **kwargs)

        return submit

    _patch(executor, "__init__", executor_init)
    _patch(executor, "_spawn_process", executor_spawn)
    _patch(executor, "submit", executor_submit)
    _patch(executor, "map", _pool_method)


def uninstall() -> None:
    """Put the originals back."""
    global _active
    _active = False
    executor = getattr(sys.modules.get("concurrent.futures.process"), "ProcessPoolExecutor", None)
    registry.restore((mp_pool.Pool,) if executor is None else (mp_pool.Pool, executor))
