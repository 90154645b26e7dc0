"""Spans that reach the collector already encoded (``pb`` records): checked, and decoded for
the destinations that need the record itself.

A pool task's span is written as an OTLP ``Span`` message in the worker that ran it
(``protobuf.TaskSpans``), so the agent forwards its bytes to an OTLP backend
without parsing its attributes or encoding them again: per task, the agent's share
of the work drops to a check. The check parses the message with the protobuf
runtime (OpenTelemetry's exporter brings it), so bytes that are not a span are
refused like any malformed record. The trace file, the console and an
application's own SDK provider take the span decoded back into a record.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable
from typing import Any

from .._core.records import EncodedSpan, Event, Finished, Link, SpanData

_Span: Any = None


def _message_type() -> Any:
    global _Span
    if _Span is None:
        from opentelemetry.proto.trace.v1.trace_pb2 import Span

        _Span = Span
    return _Span


def check(text: str | bytes) -> EncodedSpan | None:
    """A ``pb`` record's payload (hex) as the span it holds; None when it is not a whole ``Span``
    message with a trace id, a span id and a name."""
    try:
        data = binascii.unhexlify(text)
    except binascii.Error:
        return None
    return check_bytes(data)


def check_bytes(data: bytes) -> EncodedSpan | None:
    """``check()`` for the message itself (from a ring: no hex)."""
    try:
        span = _message_type().FromString(data)
    except Exception:  # protobuf's DecodeError: not a span
        return None
    if len(span.trace_id) != 16 or len(span.span_id) != 8 or not span.name:
        return None
    if len(span.parent_span_id) not in (0, 8) or not any(span.trace_id):
        return None
    return {"trace": span.trace_id.hex(), "span": span.span_id.hex(), "encoded": data}


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind is None:
        return ""
    return getattr(value, kind)


def _attributes(pairs: Iterable[Any]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def decode(record: EncodedSpan) -> SpanData:
    """The record an encoded span was written from (``check`` accepted its bytes)."""
    span = _message_type().FromString(record["encoded"])
    events: list[Event] = [
        (e.name, e.time_unix_nano, _attributes(e.attributes)) for e in span.events
    ]
    data: SpanData = {
        "trace": span.trace_id.hex(),
        "span": span.span_id.hex(),
        "parent": span.parent_span_id.hex() or None,
        "name": span.name,
        "start": span.start_time_unix_nano,
        "end": span.end_time_unix_nano,
        "status": span.status.code,
        "message": span.status.message,
        "attrs": _attributes(span.attributes),
        "events": events,
    }
    if span.kind > 1:  # OTLP INTERNAL is 1, the SDK's 0
        data["kind"] = span.kind - 1
    if span.links:
        links: list[Link] = [
            (link.trace_id.hex(), link.span_id.hex(), _attributes(link.attributes))
            for link in span.links
        ]
        data["links"] = links
    return data


def expand(records: Iterable[Finished]) -> list[SpanData]:
    """``records`` with every encoded span decoded."""
    return [decode(r) if "encoded" in r else r for r in records]
