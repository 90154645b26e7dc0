"""Span records straight to OTLP: protobuf for the exporters, OTLP/JSON for trace files.

The agent never builds SDK span objects for export: a record is already
plain data, and writing an ``ExportTraceServiceRequest`` from it directly is
many times cheaper than ``ReadableSpan`` plus the SDK's encoder. That is what
lets one agent keep up with pools running 100,000 tasks on a small machine.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import __version__

Record = Mapping[str, Any]
PROCTRACE_SCOPE = "proctrace"


def _text(value: str) -> str:
    """``value`` as valid UTF-8 text (a lone surrogate would spoil the whole request)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode()
    return value


def _json_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if not -(2**63) <= value <= 2**63 - 1:
            return {"stringValue": str(value)}
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": _text(value)}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [_json_value(v) for v in value]}}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": json_attributes(value)}}
    return {"stringValue": str(value)}


def json_attributes(attrs: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [{"key": str(k), "value": _json_value(v)} for k, v in (attrs or {}).items()]


def _json_span(record: Record) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": record["trace"],
        "spanId": record["span"],
        "name": _text(str(record["name"])),
        "kind": int(record.get("kind", 0)) + 1,  # SDK INTERNAL is 0, OTLP INTERNAL is 1
        "startTimeUnixNano": str(record["start"]),
        "endTimeUnixNano": str(record["end"]),
    }
    if record.get("parent"):
        span["parentSpanId"] = record["parent"]
    if record.get("attrs"):
        span["attributes"] = json_attributes(record["attrs"])
    if record.get("events"):
        span["events"] = [
            {"timeUnixNano": str(ts), "name": name, "attributes": json_attributes(attrs)}
            for name, ts, attrs in record["events"]
        ]
    if record.get("links"):
        span["links"] = [
            {"traceId": t, "spanId": s, "attributes": json_attributes(a)}
            for t, s, a in record["links"]
        ]
    status: dict[str, Any] = {}
    if record.get("status"):
        status["code"] = int(record["status"])
        if record.get("message"):
            status["message"] = record["message"]
    span["status"] = status
    return span


def _by_scope(records: Iterable[Record]) -> dict[str, list[Record]]:
    scopes: dict[str, list[Record]] = {}
    for record in records:
        scopes.setdefault(record.get("scope") or PROCTRACE_SCOPE, []).append(record)
    return scopes


def _scope_version(name: str) -> str | None:
    return __version__ if name == PROCTRACE_SCOPE else None


def json_request(records: Sequence[Record], resource: Mapping[str, Any]) -> dict[str, Any]:
    """One OTLP/JSON ``ExportTraceServiceRequest`` (hex ids, as the Collector writes them)."""
    scope_spans = []
    for name, group in _by_scope(records).items():
        scope: dict[str, Any] = {"name": name}
        if _scope_version(name):
            scope["version"] = _scope_version(name)
        scope_spans.append({"scope": scope, "spans": [_json_span(r) for r in group]})
    return {
        "resourceSpans": [
            {"resource": {"attributes": json_attributes(resource)}, "scopeSpans": scope_spans}
        ]
    }


# Protobuf wire format, written by hand: building generated message objects field by
# field costs about 30 us a span in Python; these bytes cost a few, because the
# attributes of one process repeat from span to span and are encoded once.
_Q = struct.Struct("<Q")
_D = struct.Struct("<d")
_KV_CACHE: dict[tuple[bytes, str, type, Any], bytes] = {}
_KV_CACHE_MAX = 8192


_SMALL = [bytes([n]) for n in range(128)]
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _varint(n: int) -> bytes:
    if 0 <= n < 128:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field: ``tag`` is the field's key byte."""
    return tag + _varint(len(data)) + data


def _any(value: Any) -> bytes:
    """An ``AnyValue`` message."""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            return _ld(b"\x0a", str(value).encode())  # OTLP ints are int64
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _D.pack(value)
    if isinstance(value, str):
        return _ld(b"\x0a", value.encode("utf-8", "replace"))
    if isinstance(value, list | tuple):
        return _ld(b"\x2a", b"".join(_ld(b"\x0a", _any(v)) for v in value))
    if isinstance(value, Mapping):
        return _ld(b"\x32", b"".join(_ld(b"\x0a", _kv(k, v)) for k, v in value.items()))
    if isinstance(value, bytes):
        return _ld(b"\x3a", value)
    return _ld(b"\x0a", str(value).encode("utf-8", "replace"))


def _kv(key: str, value: Any) -> bytes:
    """A ``KeyValue`` message."""
    return _ld(b"\x0a", str(key).encode()) + _ld(b"\x12", _any(value))


def _attribute(tag: bytes, key: str, value: Any) -> bytes:
    """One attribute as a field of its message, cached for scalar values: the attributes of
    one process repeat in every span it sends."""
    if type(value) in (str, int, float, bool):
        cache_key = (tag, key, type(value), value)
        found = _KV_CACHE.get(cache_key)
        if found is None:
            if len(_KV_CACHE) >= _KV_CACHE_MAX:
                _KV_CACHE.clear()
            found = _KV_CACHE[cache_key] = _ld(tag, _kv(key, value))
        return found
    return _ld(tag, _kv(key, value))


def _attributes(tag: bytes, attrs: Mapping[str, Any] | None) -> bytes:
    return b"".join([_attribute(tag, k, v) for k, v in (attrs or {}).items()])


def _span(record: Record) -> bytes:
    """A ``Span`` message."""
    parts = [
        b"\x0a\x10" + bytes.fromhex(record["trace"]),
        b"\x12\x08" + bytes.fromhex(record["span"]),
    ]
    if record.get("parent"):
        parts.append(b"\x22\x08" + bytes.fromhex(record["parent"]))
    parts.append(_ld(b"\x2a", str(record["name"]).encode("utf-8", "replace")))
    parts.append(b"\x30" + _varint(int(record.get("kind", 0)) + 1))
    parts.append(b"\x39" + _Q.pack(int(record["start"])))
    parts.append(b"\x41" + _Q.pack(int(record["end"])))
    parts.append(_attributes(b"\x4a", record.get("attrs")))
    for name, ts, attrs in record.get("events") or ():
        event = b"\x09" + _Q.pack(int(ts)) + _ld(b"\x12", str(name).encode())
        parts.append(_ld(b"\x5a", event + _attributes(b"\x1a", attrs)))
    for trace_id, span_id, attrs in record.get("links") or ():
        link = b"\x0a\x10" + bytes.fromhex(trace_id) + b"\x12\x08" + bytes.fromhex(span_id)
        parts.append(_ld(b"\x6a", link + _attributes(b"\x22", attrs)))
    code = int(record.get("status") or 0)
    message = record.get("message") or ""
    status = (_ld(b"\x12", message.encode("utf-8", "replace")) if message else b"") + (
        b"\x18" + _varint(code) if code else b""
    )
    parts.append(_ld(b"\x7a", status))
    return b"".join(parts)


def serialized_request(records: Sequence[Record], resource: Mapping[str, Any]) -> bytes:
    """An ``ExportTraceServiceRequest``, serialized."""
    scope_spans = []
    for name, group in _by_scope(records).items():
        scope = _ld(b"\x0a", name.encode())
        version = _scope_version(name)
        if version:
            scope += _ld(b"\x12", version.encode())
        spans = b"".join(_ld(b"\x12", _span(r)) for r in group)
        scope_spans.append(_ld(b"\x12", _ld(b"\x0a", scope) + spans))
    resource_msg = _ld(b"\x0a", _attributes(b"\x0a", resource))
    return _ld(b"\x0a", resource_msg + b"".join(scope_spans))


class Serialized:
    """Already serialized request bytes, offered where an exporter expects a message."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:
        return self.data

    SerializePartialToString = SerializeToString
