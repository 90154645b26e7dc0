"""The SDK side of span records: application spans to records, and records to SDK spans.

``ForwardProcessor``, installed on the provider proctrace sets up, lets spans
made through the OpenTelemetry API (in the main process or in a fork child)
travel the same way as proctrace's: as a record over this process's own
connection, so no exporter or gRPC channel ever exists in a process that
forks. ``to_span`` goes the other way, for an application's own provider.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from . import __version__, _wire

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SCOPE = InstrumentationScope("proctrace", __version__)


def _value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def record_of(span: ReadableSpan) -> dict[str, Any]:
    """A finished SDK span as a ``span`` record (the collector's wire form)."""
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "k": "span",
        "trace": format(ctx.trace_id, "032x"),
        "span": format(ctx.span_id, "016x"),
        "parent": format(span.parent.span_id, "016x") if span.parent else None,
        "name": span.name,
        "kind": span.kind.value,
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.value,
        "message": span.status.description or "",
        "attrs": {k: _value(v) for k, v in (span.attributes or {}).items()},
        "events": [
            [e.name, e.timestamp, {k: _value(v) for k, v in (e.attributes or {}).items()}]
            for e in span.events
        ],
        "links": [
            [
                format(link.context.trace_id, "032x"),
                format(link.context.span_id, "016x"),
                {k: _value(v) for k, v in (link.attributes or {}).items()},
            ]
            for link in span.links
        ],
        "scope": span.instrumentation_scope.name if span.instrumentation_scope else None,
    }


def _attrs(raw: dict[str, Any] | None) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in (raw or {}).items()}


def to_span(record: dict[str, Any], resource: Resource) -> ReadableSpan:
    """An SDK ReadableSpan from a finished (``span``, or merged start+end) record."""
    trace_id = int(record["trace"], 16)
    parent = record.get("parent")
    code = StatusCode(int(record.get("status", 0)))
    scope_name = record.get("scope")
    return ReadableSpan(
        name=str(record["name"]),
        context=SpanContext(trace_id, int(record["span"], 16), False, _SAMPLED),
        parent=SpanContext(trace_id, int(parent, 16), True, _SAMPLED) if parent else None,
        resource=resource,
        attributes=_attrs(record.get("attrs")),
        events=[Event(n, _attrs(attrs), int(ts)) for n, ts, attrs in record.get("events", ())],
        links=[
            Link(SpanContext(int(t, 16), int(s, 16), True, _SAMPLED), _attrs(a))
            for t, s, a in record.get("links", ())
        ],
        kind=SpanKind(int(record.get("kind", 0))),
        status=Status(code, record.get("message") or None if code is StatusCode.ERROR else None),
        start_time=int(record["start"]),
        end_time=int(record["end"]),
        instrumentation_scope=(
            InstrumentationScope(scope_name) if scope_name and scope_name != "proctrace" else _SCOPE
        ),
    )


class ForwardProcessor(SpanProcessor):
    """Sends every ended span to the collector; never blocks on the network."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        if _wire.address() is None:
            from . import _runtime

            _runtime.ensure()  # the application's first span starts the run
        _wire.send(record_of(span))

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class ForwardingTracerProvider(TracerProvider):
    """The SDK provider proctrace installs: every span goes to the collector.

    The SDK's provider re-detects its resource in every fork child, which
    starts a thread pool there and costs each child milliseconds. This
    provider's resource is fixed (the agent sets the exported resource), so a
    fork child only needs a fresh lock.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_span_processor(ForwardProcessor())

    def _handle_fork(self) -> None:
        self._tracers_lock = threading.Lock()


def yield_to_application_provider() -> None:
    """Let the application replace proctrace's provider with its own SDK provider.

    proctrace installs its provider when the first function is decorated, so
    that spans made before any process starts are kept. An application that
    then calls ``trace.set_tracer_provider()`` expects its provider to win, as
    it would without proctrace; the API would refuse a second provider, so
    this wrapper hands the place over instead.
    """
    from opentelemetry import trace

    original = trace.set_tracer_provider
    if getattr(original, "__proctrace__", False):
        return

    def set_tracer_provider(tracer_provider: trace.TracerProvider) -> None:
        current = trace._TRACER_PROVIDER
        if isinstance(current, ForwardingTracerProvider) and tracer_provider is not current:
            trace._TRACER_PROVIDER = tracer_provider
            return
        original(tracer_provider)

    set_tracer_provider.__proctrace__ = True  # type: ignore[attr-defined]
    trace.set_tracer_provider = set_tracer_provider
