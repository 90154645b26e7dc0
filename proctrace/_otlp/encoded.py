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

from .._core.names import TASK_CPU
from .._core.records import EncodedSpan, Event, Finished, Link, SpanData
from .protobuf import _ld  # a length-delimited field: ScopeSpans.spans is field 2

_Span: Any = None
_ScopeSpans: Any = None


def _message_type() -> Any:
    """The protobuf runtime's ``Span`` (loaded at the first check, with ``ScopeSpans``)."""
    global _Span, _ScopeSpans
    if _Span is None:
        from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans, Span

        _Span, _ScopeSpans = Span, ScopeSpans
    return _Span


def _scope_spans_type() -> Any:
    _message_type()
    return _ScopeSpans


def warm() -> None:
    """Load the protobuf types the checks use (the agent does it at its start)."""
    _message_type()


def check(text: str | bytes) -> EncodedSpan | None:
    """A ``pb`` record's payload (hex) as the span it holds; None when it is not a whole ``Span``
    message with a trace id, a span id and a name."""
    try:
        data = binascii.unhexlify(text)
    except binascii.Error:
        return None
    return check_bytes(data)


def check_many(messages: list[bytes]) -> tuple[list[EncodedSpan], int]:
    """``check_bytes()`` of each of ``messages`` (the spans a ring held): the spans, and how
    many were refused. The messages are parsed as one ``ScopeSpans`` (one call into the
    protobuf runtime, not one per span), and the ids of those laid out as
    ``protobuf.TaskSpans`` writes them (trace id, span id, parent id, name, in that order)
    are read straight from their bytes; any other message gets the whole check."""
    if not messages:
        return [], 0
    try:
        _scope_spans_type().FromString(b"".join([_ld(b"\x12", m) for m in messages]))
    except Exception:  # one of them is not a span: each on its own, to find which
        each = [span for span in map(check_bytes, messages) if span is not None]
        return each, len(messages) - len(each)
    out: list[EncodedSpan] = []
    last_head, last_hex = b"\xff", ""  # a head no span has (its first byte is 0x0a)
    for data in messages:
        # Read by index (small ints, nothing made): the tags and lengths of the trace id
        # (bytes 2-17), the span id (20-27), the parent's id (30-37) and a name that is not
        # empty (its tag at 38, its length at 39), as TaskSpans lays them out.
        if (
            len(data) > 40
            and data[0] == 0x0A and data[1] == 16 and data[18] == 0x12 and data[19] == 8
            and data[28] == 0x22 and data[29] == 8 and data[38] == 0x2A and data[39]
        ):
            if not data.startswith(last_head):  # another trace than the last span's
                if data[2:18] == _ZERO_TRACE:
                    continue
                last_head, last_hex = data[:18], data[2:18].hex()
            out.append({"trace": last_hex, "span": data[20:28].hex(), "encoded": data})
        else:
            span = check_bytes(data)
            if span is not None:
                out.append(span)
    return out, len(messages) - len(out)


_ZERO_TRACE = bytes(16)


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


def key_value(data: bytes) -> tuple[str, Any]:
    """A ``KeyValue`` message of a checked span, as its key and the value a record holds."""
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    pair = KeyValue.FromString(data)
    return pair.key, _value(pair.value)


def status(data: bytes) -> tuple[int, str]:
    """A ``Status`` message of a checked span, as its code and message."""
    from opentelemetry.proto.trace.v1.trace_pb2 import Status

    message = Status.FromString(data)
    return message.code, message.message


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


def running(data: bytes) -> SpanData | None:
    """A task's span as its worker wrote it before the call (``_core.ring``'s slot): its
    start, name, parent and arguments, without the end, status and CPU time it had not got
    yet; None if the bytes are not a span."""
    checked = check_bytes(data)
    if checked is None:
        return None
    span = decode(checked)
    for key in ("end", "status", "message"):
        span.pop(key, None)  # type: ignore[misc]
    span["attrs"].pop(TASK_CPU, None)
    return span


def expand(records: Iterable[Finished]) -> list[SpanData]:
    """``records`` with every encoded span decoded."""
    return [decode(r) if "encoded" in r else r for r in records]
