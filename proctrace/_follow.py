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
from typing import Any

from . import _child, _decorator, _patch, _span

PLAIN = _decorator.TraceSpec()


class ProcessTarget:
    """Runs an undecorated target as a traced process target."""

    __slots__ = ("spec", "target")

    def __init__(self, target: Callable[..., Any], spec: _decorator.TraceSpec = PLAIN) -> None:
        self.target = target
        self.spec = spec

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        proc = multiprocessing.current_process()
        carrier = getattr(proc, _patch.CARRIER_ATTR, None)
        if carrier is None or getattr(proc, _child._ENTERED_ATTR, False):
            return self.target(*args, **kwargs)
        return _child.run_process(self.target, self.spec, carrier, args, kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ProcessTarget, (self.target, self.spec))


class Task:
    """A submitted function, with the traceparent of the span that submitted it."""

    __slots__ = ("fn", "traceparent")

    def __init__(self, fn: Callable[..., Any], traceparent: str) -> None:
        self.fn = fn
        self.traceparent = traceparent

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ids = _parents.get(self.traceparent)
        if ids is None:
            ids = _span.parse_traceparent(self.traceparent)
            if ids is None:
                return self.fn(*args, **kwargs)
            if len(_parents) > 1024:
                _parents.clear()
            _parents[self.traceparent] = ids
        spec = _decorator.spec_of(self.fn)
        target = getattr(self.fn, "__wrapped__", self.fn) if spec is not None else self.fn
        if spec is None and instrumenting():
            spec = PLAIN
        if spec is None:  # not traced: only carry the context to whatever it does
            with _span.activate(_span.Parent(*ids)):
                return self.fn(*args, **kwargs)
        carrier = getattr(multiprocessing.current_process(), _patch.CARRIER_ATTR, None)
        return _child.run_call(target, spec, carrier, args, kwargs, parent=ids)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Task, (self.fn, self.traceparent))


# Parsed traceparents: the tasks of one submission share one.
_parents: dict[str, tuple[str, str]] = {}


def instrumenting() -> bool:
    from . import _instrument

    return _instrument.enabled()
