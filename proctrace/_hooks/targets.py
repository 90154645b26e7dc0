"""Picklable stand-ins that carry tracing where the user's function itself is not decorated.

``ProcessTarget`` replaces an undecorated process target (a pool's worker
loop, or any target under ``instrument()``) so the child still gets its span
and logs. ``Task`` wraps a function submitted to a pool: it carries the
``traceparent`` of the span current where the work was *submitted*, because
pools pickle tasks later, in a handler thread where that span is not current.
Both pickle as their class plus plain data; the wrapped function pickles by
reference, as it would without proctrace.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from types import FunctionType
from typing import Any

from .._child import run as _run
from .._child import span as _span
from .._core.frames import drop_own
from .._core.ids import SpanRef, parse_traceparent
from .._core.spec import PLAIN, TraceSpec, resolve, spec_of
from . import registry


class StandIn:
    """A function and its ``TraceSpec`` in one picklable object, seen by ``spec_of`` and
    ``__wrapped__`` as a ``@traced`` function is."""

    __slots__ = ("spec", "target")

    def __init__(self, target: Callable[..., Any], spec: TraceSpec = PLAIN) -> None:
        self.target = target
        self.spec = spec

    @property
    def __proctrace__(self) -> TraceSpec:
        return self.spec

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        return self.target


class ProcessTarget(StandIn):
    """Runs an undecorated target as a traced process target."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        proc = multiprocessing.current_process()
        carrier = _run.carrier_of(proc)
        if not _run.is_process_target(proc, carrier):
            return self.target(*args, **kwargs)
        assert carrier is not None
        if carrier.get("instrument"):
            registry.enable_instrument()  # grandchildren and pool tasks of this child too
        # A partial, a bound method or a callable instance: the span is the function's.
        target, args, kwargs = resolve(self.target, args, kwargs)
        try:
            return _run.run_process(target, self.spec, carrier, args, kwargs)
        except BaseException as exc:
            drop_own(exc)
            raise

    def __reduce__(self) -> tuple[Any, ...]:
        return (ProcessTarget, (self.target, self.spec))


class RunMethod:
    """Set as ``run`` on a process object whose class overrides ``run()`` (no target), as
    OpenTelemetry's threading instrumentation wraps ``Thread.run``: in the child it calls
    ``type(proc).run(proc)`` inside the process span, named after that method."""

    __slots__ = ("spec",)

    def __init__(self, spec: TraceSpec = PLAIN) -> None:
        self.spec = spec

    def __call__(self) -> Any:
        proc = multiprocessing.current_process()
        run = type(proc).run
        carrier = _run.carrier_of(proc)
        if not _run.is_process_target(proc, carrier):
            return run(proc)
        assert carrier is not None
        if carrier.get("instrument"):
            registry.enable_instrument()
        try:
            return _run.run_process(run, self.spec, carrier, (proc,), {})
        except BaseException as exc:
            drop_own(exc)
            raise

    def __reduce__(self) -> tuple[Any, ...]:
        return (RunMethod, (self.spec,))


class Task:
    """A submitted function, with the traceparent of the span that submitted it."""

    __slots__ = ("fn", "traceparent")

    def __init__(self, fn: Callable[..., Any], traceparent: str) -> None:
        self.fn = fn
        self.traceparent = traceparent

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            tasks = _tasks or load_tasks()
            if type(self.fn) is FunctionType:
                plan = tasks.find(self.fn, self.traceparent)
                if plan is not None:  # an earlier task alike in this worker worked it all out
                    return tasks.run(plan, args, kwargs)
            ids = _parents.get(self.traceparent)
            if ids is None:
                ids = parse_traceparent(self.traceparent)
                if ids is None:
                    return self.fn(*args, **kwargs)
                if len(_parents) > 1024:
                    _parents.clear()
                _parents[self.traceparent] = ids
            spec = spec_of(self.fn)
            if spec is None and registry.instrumenting():
                spec = PLAIN
            if spec is None:  # not traced: only carry the context to whatever it does
                with _span.activate(_span.Parent(*ids)):
                    return self.fn(*args, **kwargs)
            target = self.fn
            if type(target) is not FunctionType:  # a partial, a method, an instance: see through
                target, args, kwargs = resolve(target, args, kwargs)  # (each time: its own args)
            key = (target, self.traceparent)
            if isinstance(getattr(target, "__proctrace__", None), TraceSpec):
                target = getattr(target, "__wrapped__", target)  # the @traced wrapper's function
            carrier = _run.carrier_of(multiprocessing.current_process())
            return tasks.run_task(target, spec, carrier, args, kwargs, ids, key)
        except BaseException as exc:  # the task's own: sent to the caller as it is
            drop_own(exc)
            raise

    def __reduce__(self) -> tuple[Any, ...]:
        return (Task, (self.fn, self.traceparent))


# ``_child.tasks``, loaded where tasks run (a child that only runs its target never needs it)
# and by a pool's starter before its workers fork (``pools``), so that they find it loaded.
_tasks: Any = None


def load_tasks() -> Any:
    """``_child.tasks``, loaded."""
    global _tasks
    from .._child import tasks

    _tasks = tasks
    return tasks


# Parsed traceparents: the tasks of one submission share one.
_parents: dict[str, SpanRef] = {}

