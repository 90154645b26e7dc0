"""The pool hooks: task spans parented where work was submitted, worker spans where the pool
was created.

``multiprocessing.Pool`` and ``ProcessPoolExecutor`` pickle tasks in a
background thread, so the context is captured in the submitting call instead,
by wrapping the function in a ``Task``. Worker processes are stamped with the
span current when the pool was created, also for workers started later by the
pool's own threads (``maxtasksperchild``, replacing a dead worker). Each is
patched when the program imports it (``multiprocessing.pool`` alone brings in
about fifteen modules a child that uses no pool should not pay for).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from .._child import span as _span
from .._core import names, onimport
from .._core.ids import traceparent
from .._core.spec import spec_of
from . import registry
from .targets import Task, load_tasks

# Set while an executor starts a worker: the executor's creation span.
_spawning_parent: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "proctrace_pool_parent", default=None
)
# Set while a caller that wrapped each call itself submits (joblib's batches).
_as_is: contextvars.ContextVar[bool] = contextvars.ContextVar("proctrace_as_is", default=False)
_active = False


@contextlib.contextmanager
def submitting_as_is() -> Iterator[None]:
    """Functions submitted to a pool inside are left as they are: the caller wrapped the
    calls they make itself (joblib's batches hold one ``Task`` per call)."""
    token = _as_is.set(True)
    try:
        yield
    finally:
        _as_is.reset(token)


@contextlib.contextmanager
def spawning(parent: str | None) -> Iterator[None]:
    """Processes started inside are workers of another library's pool created under
    ``parent``: a span each, named after the worker loop, SIGTERM a normal end."""
    token = _spawning_parent.set(parent)
    try:
        yield
    finally:
        _spawning_parent.reset(token)


def here() -> str | None:
    """The traceparent of the span current in this thread (the run's main span at worst)."""
    return _here()


def spawning_parent(proc: Any) -> str | None:
    """The traceparent a pool worker nests under, or None when ``proc`` is no pool worker."""
    return getattr(proc, names.POOL_PARENT_ATTR, None) or _spawning_parent.get()


def _here() -> str | None:
    """The traceparent of the span current in this thread (the run's main span at worst)."""
    from .._starter import carrier as _carrier  # only where a pool is used

    ids = _span.current_ids() or _carrier.fallback_parent()
    return traceparent(*ids) if ids is not None else None


def _wrap(fn: Any) -> Any:
    if isinstance(fn, Task) or not callable(fn) or _as_is.get():
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


def _is_thread_pool(pool: Any) -> bool:
    thread_pool = getattr(sys.modules.get("multiprocessing.pool"), "ThreadPool", None)
    return thread_pool is not None and isinstance(pool, thread_pool)


def _pool_method(original: Any) -> Any:
    def method(self: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_thread_pool(self):
            func = _wrap(func)
        return original(self, func, *args, **kwargs)

    return method


def install() -> None:
    """Patch Pool and ProcessPoolExecutor once the program imports them; idempotent."""
    global _active
    if _active:
        return
    _active = True
    onimport.when_imported("multiprocessing.pool", _patch_pool)
    onimport.when_imported("concurrent.futures.process", _patch_executor)


def _patch_pool(module: ModuleType) -> None:
    pool = module.Pool
    if not _active or registry.patched(pool, "apply_async"):
        return

    def pool_init(original: Any) -> Any:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if not _is_thread_pool(self):
                # The class's own Process (a subclass may override it), stamped.
                self.Process = functools.partial(_stamped_process, _here(), type(self).Process)
                load_tasks()  # before the workers fork: they find it loaded
            original(self, *args, **kwargs)

        return __init__

    _patch(pool, "__init__", pool_init)
    for name in ("apply_async", "_map_async", "imap", "imap_unordered"):
        _patch(pool, name, _pool_method)


def _patch_executor(module: ModuleType) -> None:
    executor = module.ProcessPoolExecutor
    if not _active or registry.patched(executor, "submit"):
        return

    def executor_init(original: Any) -> Any:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            self._proctrace_parent = _here()
            load_tasks()  # before the workers fork: they find it loaded
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
    owners = (
        getattr(sys.modules.get("multiprocessing.pool"), "Pool", None),
        getattr(sys.modules.get("concurrent.futures.process"), "ProcessPoolExecutor", None),
    )
    registry.restore(tuple(owner for owner in owners if owner is not None))
