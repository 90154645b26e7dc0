"""Spans between the SDK and the record protocol: SDK spans to records, records to SDK spans.

``record_of`` lets spans made through the OpenTelemetry API travel like
proctrace's own, as a record over the process's connection; ``to_span`` goes the
other way, for an application's own provider and the console exporter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from .._core import VERSION
from .._core.names import SCOPE
from .._core.records import SpanData, SpanRecord

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SCOPE = InstrumentationScope(SCOPE, VERSION)


def _value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def record_of(span: ReadableSpan) -> SpanRecord:
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
        "start": span.start_time or 0,
        "end": span.end_time or 0,
        "status": span.status.status_code.value,
        "message": span.status.description or "",
        "attrs": {k: _value(v) for k, v in (span.attributes or {}).items()},
        "events": [
            (e.name, e.timestamp, {k: _value(v) for k, v in (e.attributes or {}).items()})
            for e in span.events
        ],
        "links": [
            (
                format(link.context.trace_id, "032x"),
                format(link.context.span_id, "016x"),
                {k: _value(v) for k, v in (link.attributes or {}).items()},
            )
            for link in span.links
        ],
        "scope": span.instrumentation_scope.name if span.instrumentation_scope else None,
    }


def _bounded(raw: Mapping[str, Any] | None) -> BoundedAttributes:
    """Event and link attributes as the SDK makes them: the OTLP encoders of 1.25 and 1.26
    read ``.dropped`` from them, which a plain dict does not have."""
    return BoundedAttributes(attributes=_attrs(raw), immutable=True)


def _attrs(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in (raw or {}).items()}


def to_span(record: SpanData, resource: Resource) -> ReadableSpan:
    """An SDK ReadableSpan from a finished span record."""
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
        events=[Event(n, _bounded(attrs), int(ts)) for n, ts, attrs in record.get("events", ())],
        links=[
            Link(SpanContext(int(t, 16), int(s, 16), True, _SAMPLED), _bounded(a))
            for t, s, a in record.get("links", ())
        ],
        kind=SpanKind(int(record.get("kind", 0))),
        status=Status(code, record.get("message") or None if code is StatusCode.ERROR else None),
        start_time=int(record["start"]),
        end_time=int(record.get("end", record["start"])),
        instrumentation_scope=(
            InstrumentationScope(scope_name) if scope_name and scope_name != SCOPE else _SCOPE
        ),
    )
