"""Pools and executors: task spans parented where work was submitted, worker spans where the
pool was created.

``multiprocessing.Pool`` and ``ProcessPoolExecutor`` pickle tasks in a
background thread, so the context is captured in the submitting call instead,
by wrapping the function in a ``Task``. Worker processes are stamped with the
span current when the pool was created, also for workers started later by the
pool's own threads (``maxtasksperchild``, replacing a dead worker).
"""

from __future__ import annotations

import contextvars
import functools
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import pool as mp_pool
from typing import Any

from . import _decorator, _follow, _span

PARENT_ATTR = "_proctrace_pool_parent"
# Set while an executor starts a worker: the executor's creation span.
_spawning_parent: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "proctrace_pool_parent", default=None
)
_originals: dict[tuple[type, str], Any] = {}


def spawning_parent(proc: Any) -> str | None:
    """The traceparent a pool worker nests under, or None when ``proc`` is no pool worker."""
    return getattr(proc, PARENT_ATTR, None) or _spawning_parent.get()


def _here() -> str | None:
    """The traceparent of the span current in this thread (the run's main span at worst)."""
    ids = _span.current_ids()
    if ids is None:
        from . import _carrier

        ids = _carrier.fallback_parent()
    return _span.traceparent(*ids) if ids is not None else None


def _wrap(fn: Any) -> Any:
    if isinstance(fn, _follow.Task) or not callable(fn):
        return fn
    if _decorator.spec_of(fn) is None and not _follow.instrumenting():
        return fn  # nothing to trace: leave the task exactly as it was
    parent = _here()
    return fn if parent is None else _follow.Task(fn, parent)


def _stamped_process(
    parent: str | None, make: Any, ctx: Any, *args: Any, **kwds: Any
) -> Any:
    process = make(ctx, *args, **kwds)
    setattr(process, PARENT_ATTR, parent)
    return process


def _patch(owner: type, name: str, make: Any) -> None:
    original = owner.__dict__[name]
    _originals[(owner, name)] = original
    setattr(owner, name, functools.wraps(original)(make(original)))


def _is_thread_pool(pool: Any) -> bool:
    return isinstance(pool, mp_pool.ThreadPool)


def install() -> None:
    """Patch Pool and ProcessPoolExecutor; idempotent."""
    if _originals:
        return

    def pool_init(original: Any) -> Any:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if not _is_thread_pool(self):
                # The class's own Process (a subclass may override it), stamped.
                self.Process = functools.partial(_stamped_process, _here(), type(self).Process)
            original(self, *args, **kwargs)

        return __init__

    def pool_method(original: Any) -> Any:
        def method(self: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
            if not _is_thread_pool(self):
                func = _wrap(func)
            return original(self, func, *args, **kwargs)

        return method

    _patch(mp_pool.Pool, "__init__", pool_init)
    for name in ("apply_async", "_map_async", "imap", "imap_unordered"):
        _patch(mp_pool.Pool, name, pool_method)

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
            if not isinstance(inner, _follow.Task):
                fn = _wrap(fn)
            return original(self, fn, *args, **kwargs)

        return submit

    _patch(ProcessPoolExecutor, "__init__", executor_init)
    _patch(ProcessPoolExecutor, "_spawn_process", executor_spawn)
    _patch(ProcessPoolExecutor, "submit", executor_submit)
    _patch(ProcessPoolExecutor, "map", pool_method)


def uninstall() -> None:
    """Put the originals back."""
    for (owner, name), original in _originals.items():
        setattr(owner, name, original)
    _originals.clear()
