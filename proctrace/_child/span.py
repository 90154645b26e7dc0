"""proctrace's own spans: plain records sent to the collector, and the current-span context.

A traced child does not import the OpenTelemetry SDK: it makes ids, keeps a
dict of attributes and sends a start record and an end record. The collector
turns them into SDK spans. The span is also made current in OpenTelemetry's
context, at once when the API is loaded, else the moment the program imports it,
so spans the application makes and contexts it propagates nest under it.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from types import ModuleType
from typing import Any

from .._core import onimport as _onimport
from .._core.ids import SpanRef, new_id, parse_traceparent, traceparent
from .._core.names import STATUS_ERROR, STATUS_OK, STATUS_UNSET
from . import wire as _wire

__all__ = [
    "STATUS_ERROR",
    "STATUS_OK",
    "STATUS_UNSET",
    "Parent",
    "Span",
    "activate",
    "current_ids",
    "current_span",
    "new_id",
    "parse_traceparent",
    "traceparent",
    "when_api_loaded",
]


class Parent:
    """A span of another process (or thread) to nest under: just its ids and sampled flag."""

    __slots__ = ("sampled", "span_id", "trace_id")

    def __init__(self, trace_id: str, span_id: str, sampled: bool = True) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled


class Span:
    """A span being recorded in this process.

    ``announce=True`` sends a start record at once, so the collector can end
    the span itself if this process dies first (process spans). Short spans
    (pool tasks) send a single record when they end: one write instead of two.
    An unsampled span (``sampled=False``) has ids, so logs and children can name
    it, but sends nothing.
    """

    __slots__ = (
        "announced",
        "attributes",
        "events",
        "name",
        "parent_id",
        "sampled",
        "shared",
        "span_id",
        "start_ns",
        "trace_id",
    )

    def __init__(
        self,
        name: str,
        trace_id: str,
        parent_id: str | None,
        attributes: dict[str, Any],
        *,
        announce: bool = True,
        span_id: str | None = None,
        shared: bool = False,
        sampled: bool = True,
    ) -> None:
        self.name = name
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.span_id = span_id or new_id(8)
        self.start_ns = time.time_ns()
        self.attributes = attributes
        self.events: list[tuple[str, int, dict[str, Any]]] = []
        self.announced = announce
        self.shared = shared
        self.sampled = sampled
        if not announce or not sampled:
            return
        _wire.send(
            {
                "k": "start",
                "trace": trace_id,
                "span": self.span_id,
                "parent": parent_id,
                "name": name,
                "start": self.start_ns,
                "attrs": attributes,
            }
        )

    def record_exception(self, exc: BaseException) -> None:
        """Add the OpenTelemetry ``exception`` event: type, message and stack trace."""
        self.events.append(
            (
                "exception",
                time.time_ns(),
                {
                    "exception.type": _qualified(type(exc)),
                    "exception.message": _message(exc),
                    "exception.stacktrace": "".join(
                        traceback.format_exception(type(exc), exc, exc.__traceback__)
                    ),
                },
            )
        )

    def end(self, status: int, message: str = "", attributes: dict[str, Any] | None = None) -> int:
        """Send the end record; return the end time in ns."""
        end_ns = time.time_ns()
        if not self.sampled:
            return end_ns
        if self.announced:
            _wire.send(
                {
                    "k": "end",
                    "span": self.span_id,
                    "end": end_ns,
                    "status": status,
                    "message": message,
                    "attrs": attributes or {},
                    "events": self.events,
                }
            )
            return end_ns
        if attributes:
            self.attributes.update(attributes)
        _wire.send(
            {
                "k": "span",
                "d": self.shared,
                "trace": self.trace_id,
                "span": self.span_id,
                "parent": self.parent_id,
                "name": self.name,
                "start": self.start_ns,
                "end": end_ns,
                "status": status,
                "message": message,
                "attrs": self.attributes,
                "events": self.events,
            }
        )
        return end_ns


def _qualified(kind: type) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


# The span proctrace made current in this thread of this process (or None).
_current: ContextVar[Span | Parent | None] = ContextVar("proctrace_current_span", default=None)


def current_span() -> Span | Parent | None:
    """The span proctrace made current in this thread, if any."""
    return _current.get()


def current_ids() -> SpanRef | None:
    """The innermost current span (ids and sampled flag), from OpenTelemetry or proctrace."""
    if "opentelemetry.trace" in sys.modules:
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            return SpanRef(
                format(ctx.trace_id, "032x"),
                format(ctx.span_id, "016x"),
                bool(ctx.trace_flags.sampled),
            )
    span = _current.get()
    if span is not None:
        return SpanRef(span.trace_id, span.span_id, span.sampled)
    return None


@contextlib.contextmanager
def activate(span: Span | Parent) -> Iterator[None]:
    """Make ``span`` current here, and in OpenTelemetry's context.

    When the API is not loaded yet, the span waits for it (``_Pending``): should the
    program import it inside (a spawn child importing ``opentelemetry`` in its
    target), the span is made current there at that moment, so the program's spans
    nest under it, and is detached again when this block ends."""
    token = _current.set(span)
    otel_token = None
    pending = pending_token = None
    if "opentelemetry.trace" in sys.modules:
        otel_token = _attach(span)
    else:
        pending = _Pending(span, _pending.get())
        pending_token = _pending.set(pending)
        _watch_api()
    try:
        yield
    finally:
        if pending is not None and pending_token is not None:
            _pending.reset(pending_token)
            otel_token = _attached_at_import(pending)
        if otel_token is not None:
            from opentelemetry import context

            context.detach(otel_token)
        _current.reset(token)


def _attach(span: Span | Parent) -> Any:
    """Make ``span`` current in OpenTelemetry's context; the token detaches it."""
    from opentelemetry import context, trace

    span_context = trace.SpanContext(
        int(span.trace_id, 16),
        int(span.span_id, 16),
        is_remote=False,
        trace_flags=trace.TraceFlags(
            trace.TraceFlags.SAMPLED if span.sampled else trace.TraceFlags.DEFAULT
        ),
    )
    return context.attach(trace.set_span_in_context(trace.NonRecordingSpan(span_context)))


class _Pending:
    """An ``activate()`` entered before the OpenTelemetry API was loaded, and the one around it."""

    __slots__ = ("outer", "span")

    def __init__(self, span: Span | Parent, outer: _Pending | None) -> None:
        self.span = span
        self.outer = outer


_pending: ContextVar[_Pending | None] = ContextVar("proctrace_pending_otel", default=None)
# The pending spans attached when the API was imported, with their tokens: per context, so
# that only the context that attached them detaches them.
_attached: ContextVar[tuple[tuple[_Pending, Any], ...]] = ContextVar(
    "proctrace_attached_otel", default=()
)
# What to do once the program imports the API, by key (see when_api_loaded).
_api_callbacks: dict[str, Callable[[], None]] = {}


def _attached_at_import(pending: _Pending) -> Any:
    attached = _attached.get()
    for i, (entry, otel_token) in enumerate(attached):
        if entry is pending:
            _attached.set(attached[:i] + attached[i + 1 :])
            return otel_token
    return None


def _watch_api() -> None:
    _onimport.when_imported("opentelemetry.trace", _api_loaded)


def _api_loaded(module: ModuleType) -> None:
    """Right after the program imported ``opentelemetry.trace`` (the SDK may be halfway
    through its own import: only the API is used here)."""
    chain = []
    pending = _pending.get()
    while pending is not None:
        chain.append(pending)
        pending = pending.outer
    attached = list(_attached.get())
    for entry in reversed(chain):  # outermost first, so that detaching unwinds in order
        attached.append((entry, _attach(entry.span)))
    if attached:
        _attached.set(tuple(attached))
    callbacks = list(_api_callbacks.values())
    _api_callbacks.clear()
    for callback in callbacks:
        callback()


def when_api_loaded(key: str, callback: Callable[[], None]) -> None:
    """Call ``callback()`` now if ``opentelemetry.trace`` is loaded, else right after the
    program imports it; a later callback of the same ``key`` replaces an earlier one."""
    if "opentelemetry.trace" in sys.modules:
        _api_callbacks.pop(key, None)
        callback()
        return
    _api_callbacks[key] = callback
    _watch_api()
