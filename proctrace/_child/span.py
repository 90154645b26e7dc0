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
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from types import ModuleType
from typing import Any

from .._core import onimport as _onimport
from .._core.ids import SpanRef, new_id, parse_traceparent, traceparent
from .._core.names import DROPPED_LOG_EVENTS, STATUS_ERROR, STATUS_OK, STATUS_UNSET
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
    ``sent=True``: the start record went out already (a fork child's, sent by its
    starter on the connection the child inherited).
    An unsampled span (``sampled=False``) has ids, so logs and children can name
    it, but sends nothing.
    """

    __slots__ = (
        "announced",
        "attributes",
        "events",
        "links",
        "name",
        "parent_id",
        "ring",
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
        task: bool = False,
        links: list[tuple[str, str, dict[str, Any]]] | None = None,
        sent: bool = False,
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
        self.links = links
        self.ring = False  # its records go through the process's ring (a Dask task's)
        if not announce or not sampled or sent:  # sent: its starter sent the start record
            return
        record: dict[str, Any] = {
            "k": "start",
            "trace": trace_id,
            "span": self.span_id,
            "parent": parent_id,
            "name": name,
            "start": self.start_ns,
            "attrs": attributes,
        }
        if links:
            record["links"] = links
        if task:  # not a process's span: the collector holds it for no exit code
            record["t"] = True
            # Many of these, two records each: through the ring when there is room (the
            # end then follows its start there); the collector reads both in order.
            self.ring = _wire.send_task(record)
        else:
            _wire.send(record)

    @classmethod
    def for_task(cls, name: str, trace_id: str, parent_id: str) -> Span:
        """A sampled span of one call that sends one record when it ends (a pool task's,
        which ``_child.tasks`` encodes): ``Span(..., announce=False, shared=True)``, made
        without ``__init__``'s work, for every task."""
        span = cls.__new__(cls)
        span.name, span.trace_id, span.parent_id = name, trace_id, parent_id
        span.span_id, span.start_ns = new_id(8), time.time_ns()
        span.attributes, span.events, span.links = {}, [], None
        span.announced, span.shared, span.sampled, span.ring = False, True, True, False
        return span

    @classmethod
    def opened(cls, name: str, trace_id: str, parent_id: str, span_id: str, start_ns: int) -> Span:
        """A sampled process span whose start record went out already (a fork child's, sent
        by its starter): made without ``__init__``'s work, for every fork child."""
        span = cls.__new__(cls)
        span.name, span.trace_id, span.parent_id = name, trace_id, parent_id
        span.span_id, span.start_ns = span_id, start_ns
        span.attributes, span.events, span.links = {}, [], None
        span.announced, span.shared, span.sampled, span.ring = True, False, True, False
        return span

    @classmethod
    def announced_task(cls, name: str, parent: SpanRef, span_id: str, start_ns: int) -> Span:
        """A sampled task span whose start record its caller sends (``announced.run``), made
        without ``__init__``'s work; ``ring`` says where that record went."""
        span = cls.__new__(cls)
        span.name, span.trace_id, span.parent_id = name, parent.trace_id, parent.span_id
        span.span_id, span.start_ns = span_id, start_ns
        span.attributes, span.events, span.links = {}, [], None
        span.announced, span.shared, span.sampled, span.ring = True, False, True, False
        return span

    def record_exception(self, exc: BaseException) -> None:
        """Add the OpenTelemetry ``exception`` event: type, message and stack trace, cleaned of
        secrets as argument reprs are (``cleaned``)."""
        self.events.append(
            (
                "exception",
                time.time_ns(),
                {
                    "exception.type": _qualified(type(exc)),
                    "exception.message": cleaned(exception_message(exc)),
                    "exception.stacktrace": traceback_text(exc),
                },
            )
        )

    def end(self, status: int, message: str = "", attributes: dict[str, Any] | None = None) -> int:
        """Send the end record; return the end time in ns."""
        end_ns = time.time_ns()
        if not self.sampled:
            return end_ns
        if self.announced:
            dropped = self.attributes.get(DROPPED_LOG_EVENTS)
            if dropped:  # counted after the start record went out
                attributes = {**(attributes or {}), DROPPED_LOG_EVENTS: dropped}
            end: dict[str, Any] = {
                "k": "end",
                "span": self.span_id,
                "end": end_ns,
                "status": status,
                "message": message,
                "attrs": attributes or {},
                "events": self.events,
            }
            if self.ring:
                _wire.send_task(end)
            else:
                _wire.send(end)
            return end_ns
        if attributes:
            self.attributes.update(attributes)
        record: dict[str, Any] = {
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
        if self.links:
            record["links"] = self.links
        _wire.send(record)
        return end_ns


def _qualified(kind: type) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def exception_message(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when that raises (as it is, secrets not cleaned)."""
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def traceback_text(exc: BaseException) -> str:
    """The formatted traceback of ``exc``, cleaned of secrets (``cleaned``)."""
    import traceback  # loaded on the first failure, not by every traced program

    return cleaned("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


def cleaned(text: str) -> str:
    """What an exception says (message, stack trace, a status message of them) with the secrets
    reprs are cleaned of as ``[REDACTED]`` (``redact=`` names too), cut to 64 Ki characters (a
    20 MB message made an end record longer than the agent takes: the span was lost)."""
    from .._core import arguments, redact  # every traced process has them: no import cost

    return redact.cleaned_text(arguments.hide_known(text[:67000]), 65536, arguments.given)


# The span proctrace made current in this thread of this process (or None).
_current: ContextVar[Span | Parent | None] = ContextVar("proctrace_current_span", default=None)


def current_span() -> Span | Parent | None:
    """The span proctrace made current in this thread, if any."""
    return _current.get()


def unsampled_here() -> bool:
    """True when what is current here is not sampled: no proctrace span, or an unsampled one,
    and the OpenTelemetry API not loaded (its context could hold a sampled span)."""
    if "opentelemetry.trace" in sys.modules:
        return False
    span = _current.get()
    return span is None or not span.sampled


def current_key() -> object:
    """What says which span is current here, for a cache (see ``current_ids``): proctrace's
    current span itself, or the ids of OpenTelemetry's once the API is loaded."""
    if "opentelemetry.trace" in sys.modules:
        return current_ids()
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

    When the API is not loaded yet and the program imports it inside this block (a
    spawn child importing ``opentelemetry`` in its target), the innermost span is
    made current there at that moment (``_api_loaded``), and each block that ends
    hands over to the span around it, so the program's spans nest under the right
    one before and after."""
    state = enter(span)
    try:
        yield
    finally:
        leave(span, state)


def enter(span: Span | Parent) -> tuple[Any, Any]:
    """``activate``'s start, for a caller that cannot afford a generator per call (a pool
    task); hand what it returns to ``leave``."""
    token = _current.set(span)
    if "opentelemetry.trace" in sys.modules:
        return token, _attach(span)
    if not _watching:
        _watch_api()
    return token, None


def leave(span: Span | Parent, state: tuple[Any, Any]) -> None:
    """``activate``'s end."""
    token, otel_token = state
    if otel_token is not None:
        from opentelemetry import context

        context.detach(otel_token)
        _current.reset(token)
        return
    attached = _attached.get()
    mine = bool(attached) and attached[-1][0] is span
    if mine:
        from opentelemetry import context

        context.detach(attached[-1][1])
        attached = attached[:-1]
    _current.reset(token)
    if mine:
        outer = _current.get()
        if outer is not None:  # entered before the import too: current from now on
            attached = (*attached, (outer, _attach(outer)))
        _attached.set(attached)


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


# Spans made current in OpenTelemetry's context after their activate() began (the API was
# imported inside it), innermost last, with their tokens. Per context: only the context that
# attached one detaches it.
_attached: ContextVar[tuple[tuple[Span | Parent, Any], ...]] = ContextVar(
    "proctrace_attached_otel", default=()
)
# What to do once the program imports the API, by key (see when_api_loaded).
_api_callbacks: dict[str, Callable[[], None]] = {}
_watching = False  # an import hook for opentelemetry.trace is in place


def _watch_api() -> None:
    global _watching
    _watching = True
    _onimport.when_imported("opentelemetry.trace", _api_loaded)


def _api_loaded(module: ModuleType) -> None:
    """Right after the program imported ``opentelemetry.trace`` (the SDK may be halfway
    through its own import: only the API is used here)."""
    global _watching
    _watching = False
    span = _current.get()
    if span is not None:
        _attached.set((*_attached.get(), (span, _attach(span))))
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
