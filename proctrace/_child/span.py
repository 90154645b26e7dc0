"""proctrace's own spans: plain records sent to the collector, and the current-span context.

A traced child does not import the OpenTelemetry SDK: it makes ids, keeps a
dict of attributes and sends a start record and an end record. The collector
turns them into SDK spans. When the OpenTelemetry API is already loaded (fork
children, the main process), the span is also made current there, so spans the
application makes and contexts it propagates nest under it.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

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
    """Make ``span`` current here, and in OpenTelemetry's context when its API is loaded."""
    token = _current.set(span)
    otel_token = None
    if "opentelemetry.trace" in sys.modules:
        from opentelemetry import context, trace

        span_context = trace.SpanContext(
            int(span.trace_id, 16),
            int(span.span_id, 16),
            is_remote=False,
            trace_flags=trace.TraceFlags(
                trace.TraceFlags.SAMPLED if span.sampled else trace.TraceFlags.DEFAULT
            ),
        )
        otel_token = context.attach(trace.set_span_in_context(trace.NonRecordingSpan(span_context)))
    try:
        yield
    finally:
        if otel_token is not None:
            from opentelemetry import context

            context.detach(otel_token)
        _current.reset(token)
