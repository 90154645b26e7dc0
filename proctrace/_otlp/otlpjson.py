"""Span records to OTLP/JSON, and OTLP/JSON back to protobuf messages.

This is what the OpenTelemetry Collector's file exporter writes: protobuf's
JSON mapping with lowerCamelCase keys, integer enums and hex-encoded trace and
span ids (the OTLP/JSON exception to protobuf's base64 for bytes). Every value
goes through the same clean-up as the protobuf writer's (``values``).
"""

# ruff: noqa: UP031  (JSON is written with %: its braces would all be doubled in a format)
from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from json.encoder import encode_basestring_ascii as _text  # a str as json.dumps writes it
from typing import Any

from .._core.records import Finished, SpanData
from . import encoded, values
from .protobuf import by_scope, scope_version

_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _value(value: Any) -> dict[str, Any]:
    kind = values.kind_of(value)
    if kind == values.STRING:
        return {"stringValue": values.text(value)}
    if kind == values.BOOL:
        return {"boolValue": value}
    if kind == values.INT:
        return {"intValue": str(value)}
    if kind == values.DOUBLE:
        return {"doubleValue": values.json_double(value)}
    if kind == values.ARRAY:
        return {"arrayValue": {"values": [_value(v) for v in value]}}
    if kind == values.KVLIST:
        return {"kvlistValue": {"values": attributes(value)}}
    return {"bytesValue": base64.b64encode(value).decode()}


def attributes(attrs: Mapping[Any, Any] | None) -> list[dict[str, Any]]:
    return [{"key": values.text(k), "value": _value(v)} for k, v in (attrs or {}).items()]


def _span(record: SpanData) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": record["trace"],
        "spanId": record["span"],
        "name": values.text(record["name"]),
        "kind": int(record.get("kind", 0)) + 1,  # SDK INTERNAL is 0, OTLP INTERNAL is 1
        "startTimeUnixNano": str(record["start"]),
        "endTimeUnixNano": str(record.get("end", record["start"])),
    }
    if record.get("parent"):
        span["parentSpanId"] = record["parent"]
    if record.get("attrs"):
        span["attributes"] = attributes(record["attrs"])
    if record.get("events"):
        span["events"] = [
            {"timeUnixNano": str(ts), "name": values.text(name), "attributes": attributes(attrs)}
            for name, ts, attrs in record.get("events", ())
        ]
    if record.get("links"):
        span["links"] = [
            {"traceId": t, "spanId": s, "attributes": attributes(a)}
            for t, s, a in record.get("links", ())
        ]
    status: dict[str, Any] = {}
    if record.get("status"):
        status["code"] = int(record.get("status", 0))
        if record.get("message"):
            status["message"] = values.text(record.get("message", ""))
    span["status"] = status
    return span


def _scope(name: str) -> dict[str, Any]:
    scope: dict[str, Any] = {"name": values.text(name)}
    version = scope_version(name)
    if version:
        scope["version"] = version
    return scope


def request(records: Sequence[SpanData], resource: Mapping[str, Any]) -> dict[str, Any]:
    """One OTLP/JSON ``ExportTraceServiceRequest`` (hex ids, as the Collector writes them):
    the structure ``dumps`` writes as text (the tests hold the two to each other)."""
    scope_spans = [
        {"scope": _scope(name), "spans": [_span(r) for r in group]}
        for name, group in by_scope(records).items()
    ]
    return {
        "resourceSpans": [
            {"resource": {"attributes": attributes(resource)}, "scopeSpans": scope_spans}
        ]
    }


def dumps(records: Sequence[Finished], resource: Mapping[str, Any]) -> bytes:
    """``request()`` as one line of a trace file (strict JSON, newline-terminated): the same
    text ``json.dumps`` makes of it, put together span by span, so that a span encoded where
    it ended (a pool task's) is written from its bytes, without making its record (about
    11 µs a span here, against 57 for decoding it and dumping the record)."""
    scopes = [
        '{"scope":%s,"spans":[%s]}' % (_dump(_scope(name)), ",".join(_spans(group)))
        for name, group in by_scope(records).items()
    ]
    return (
        '{"resourceSpans":[{"resource":{"attributes":%s},"scopeSpans":[%s]}]}\n'
        % (_dump(attributes(resource)), ",".join(scopes))
    ).encode()


def _dump(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _spans(group: Sequence[Finished]) -> list[str]:
    out = []
    for record in group:
        if "encoded" not in record:
            out.append(_dump(_span(record)))
            continue
        text = _encoded_span(record["encoded"])
        if text is None:  # a layout the reader below does not take: through its record
            text = _dump(_span(encoded.decode(record)))
        out.append(text)
    return out


_Q = struct.Struct("<Q")
_D = struct.Struct("<d")
_QQ = struct.Struct("<QBQ")  # a start, the end's tag, the end
# The text of attributes (KeyValue messages) and statuses already seen, by their bytes: the
# attributes a process's task spans share repeat in every one.
_SEEN: dict[bytes, tuple[str, str]] = {}
_SEEN_MAX = 4096
_SEEN_SIZE = 512
# The attributes a process's task spans all start with (those kept in _SEEN, in a row), by
# their first _RUN_KEY bytes: their bytes, their texts and their keys.
_RUNS: dict[bytes, tuple[bytes, list[str], frozenset[str]]] = {}
_RUNS_MAX = 256
_RUN_KEY = 32
_STRING_ARRAY = b"\x2a"  # AnyValue.array_value


def _encoded_span(data: bytes) -> str | None:
    """``_dump(_span(encoded.decode(...)))`` of a checked ``Span`` message, read from its
    bytes (the attributes' text kept by their bytes): None for a field it does not read
    (trace state, events, links, dropped counts, flags), left to the general path."""
    try:
        return _read_span(data)
    except (IndexError, ValueError, struct.error):  # UnicodeDecodeError is a ValueError
        return None


def _read_span(data: bytes) -> str | None:
    i, n = 0, len(data)
    trace = span_id = parent = b""
    name, kind, start, end, status = "", 0, 0, 0, "{}"
    attrs: list[str] = []
    keys: set[str] = set()
    size = data[39]
    learn = -1  # where the attributes a span's process gives all its spans start, if unknown
    if (  # the fields before the attributes, as TaskSpans writes them: read in one go
        data[0] == 0x0A
        and data[1] == 16
        and data[18] == 0x12
        and data[19] == 8
        and data[28] == 0x22
        and data[29] == 8
        and data[38] == 0x2A
        and size < 0x80
        and data[40 + size] == 0x30
        and data[41 + size] < 0x80
        and data[42 + size] == 0x39
        and data[51 + size] == 0x41
    ):
        trace, span_id, parent = data[2:18], data[20:28], data[30:38]
        name = data[40 : 40 + size].decode()
        kind = data[41 + size]
        start, end = _QQ.unpack_from(data, 43 + size)[::2]
        i = 60 + size
        run = _RUNS.get(data[i : i + _RUN_KEY])
        if run is not None and data.startswith(run[0], i):  # the shared attributes, known
            attrs, keys = list(run[1]), set(run[2])
            i += len(run[0])
        else:
            learn = i
    shared = -1  # where the first attribute not kept by its bytes starts (learning)
    while i < n:
        at = i
        tag = data[i]
        if tag == 0x39:  # start, fixed64
            start = _Q.unpack_from(data, i + 1)[0]
            i += 9
            continue
        if tag == 0x41:  # end
            end = _Q.unpack_from(data, i + 1)[0]
            i += 9
            continue
        if tag == 0x30:  # kind, a small varint
            kind = data[i + 1]
            if kind & 0x80:
                return None
            i += 2
            continue
        length = data[i + 1]
        j = i + 2
        if length & 0x80:
            length, j = _varint(data, i + 1)
        body = data[j : j + length]
        if len(body) != length:
            return None
        i = j + length
        if tag == 0x4A:  # an attribute
            seen = _SEEN.get(body)
            if seen is None:
                seen = _key_value(body)
                if learn >= 0 and shared < 0 and body not in _SEEN:
                    shared, run_keys, count = at, frozenset(keys), len(attrs)
            key, text = seen
            if key in keys:  # a record keeps one value per key: the general path
                return None
            keys.add(key)
            attrs.append(text)
            continue
        if learn >= 0 and shared < 0:
            shared, run_keys, count = at, frozenset(keys), len(attrs)
        if tag == 0x7A:
            seen = _SEEN.get(body)
            if seen is None:
                seen = _keep(body, ("", _status(*encoded.status(body))))
            status = seen[1]
        elif tag == 0x0A:
            trace = body
        elif tag == 0x12:
            span_id = body
        elif tag == 0x22:
            parent = body
        elif tag == 0x2A:
            name = body.decode()
        else:
            return None
    if learn >= 0:
        if shared < 0:
            shared, run_keys, count = n, frozenset(keys), len(attrs)
        if shared - learn >= _RUN_KEY:
            if len(_RUNS) >= _RUNS_MAX:
                _RUNS.clear()
            _RUNS[data[learn : learn + _RUN_KEY]] = (data[learn:shared], attrs[:count], run_keys)
    return (
        '{"traceId":"%s","spanId":"%s","name":%s,"kind":%d,"startTimeUnixNano":"%d",'
        '"endTimeUnixNano":"%d"%s%s,"status":%s}'
        % (
            trace.hex(),
            span_id.hex(),
            _text(name),
            kind if kind > 1 else 1,  # OTLP INTERNAL (1) for unspecified (0)
            start,
            end,
            ',"parentSpanId":"%s"' % parent.hex() if parent else "",
            ',"attributes":[%s]' % ",".join(attrs) if attrs else "",
            status,
        )
    )


def _varint(data: bytes, i: int) -> tuple[int, int]:
    """The varint at ``data[i]``, and the index after it."""
    value = shift = 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _key_value(body: bytes) -> tuple[str, str]:
    """An attribute's key and text: a double or an array of short strings (a task's CPU
    time, its arguments) read here and not kept; any other parsed, and kept."""
    size = body[1]
    if body[0] == 0x0A and size < 0x80:
        at = 2 + size
        if len(body) == at + 11 and body[at : at + 3] == b"\x12\x09\x21":
            key = body[2:at].decode()
            value = _D.unpack_from(body, at + 3)[0]
            text = repr(value) if value - value == 0 else _dump(values.json_double(value))
            return key, '{"key":%s,"value":{"doubleValue":%s}}' % (_text(key), text)
        if body[at : at + 1] == b"\x12" and body[at + 2 : at + 3] == _STRING_ARRAY:
            items = _strings(body, at)
            if items is not None:
                return body[2:at].decode(), '{"key":%s,"value":{"arrayValue":{"values":[%s]}}}' % (
                    _text(body[2:at].decode()),
                    ",".join('{"stringValue":%s}' % _text(item) for item in items),
                )
    key, value = encoded.key_value(body)
    return _keep(body, (key, '{"key":%s,"value":%s}' % (_text(key), _dump(_value(value)))))


def _strings(body: bytes, at: int) -> list[str] | None:
    """The strings of an array value at ``body[at]`` (its ``value`` field) when every length
    in it is one byte; None otherwise."""
    if body[at + 1] & 0x80 or body[at + 3] & 0x80:
        return None
    end = at + 4 + body[at + 3]
    if body[at + 1] != end - at - 2 or end != len(body):
        return None
    p, out = at + 4, []
    while p < end:
        item, size = body[p + 1], body[p + 3]
        if body[p] != 0x0A or body[p + 2] != 0x0A or item & 0x80 or item != size + 2:
            return None
        out.append(body[p + 4 : p + 4 + size].decode())
        p += 2 + item
    return out if p == end else None


def _keep(body: bytes, seen: tuple[str, str]) -> tuple[str, str]:
    if len(body) <= _SEEN_SIZE:  # what spans share is short; a long argument is not kept
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN[body] = seen
    return seen


def _status(code: int, message: str) -> str:
    if not code:
        return "{}"
    if not message:
        return '{"code":%d}' % code
    return '{"code":%d,"message":%s}' % (code, _text(message))


def _walk_spans(req: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for resource_spans in req.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            yield from scope_spans.get("spans", ())


def to_protobuf(req: dict[str, Any]) -> Any:
    """An ``ExportTraceServiceRequest`` message from one OTLP/JSON request with hex ids."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    def to_b64(value: str) -> str:
        return base64.b64encode(bytes.fromhex(value)).decode()

    copy = json.loads(json.dumps(req))
    for span in _walk_spans(copy):
        for key in _ID_KEYS:
            if span.get(key):
                span[key] = to_b64(span[key])
        for link in span.get("links", ()):
            for key in _ID_KEYS:
                if link.get(key):
                    link[key] = to_b64(link[key])
    return json_format.ParseDict(copy, ExportTraceServiceRequest())
