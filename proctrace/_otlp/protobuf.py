"""Span records straight to OTLP protobuf bytes, written by hand.

The agent never builds SDK span objects for export: a record is already
plain data, and writing an ``ExportTraceServiceRequest`` from it directly is
many times cheaper than ``ReadableSpan`` plus the SDK's encoder (generated
message objects cost about 30 us a span in Python; these bytes a few, because
the attributes of one process repeat from span to span and are encoded once).
That is what lets one agent keep up with pools running 100,000 tasks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from .._core import VERSION
from .._core.names import ARGS, KWARGS_PREFIX, SCOPE, TASK_CPU
from .._core.records import EncodedSpan, SpanData
from . import values

_Q = struct.Struct("<Q")
_D = struct.Struct("<d")
_KV_CACHE: dict[tuple[bytes, str, type, Any], bytes] = {}
_KV_CACHE_MAX = 8192
_SMALL = [bytes([n]) for n in range(128)]


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
    n = len(data)
    if n < 128:
        return tag + _SMALL[n] + data
    if n < 16384:  # a span, most often: its length in two bytes, without a call
        return b"%s%c%c%s" % (tag, (n & 0x7F) | 0x80, n >> 7, data)
    return tag + _varint(n) + data


def _any(value: Any) -> bytes:
    """An ``AnyValue`` message."""
    kind = values.kind_of(value)
    if kind == values.STRING:
        return _ld(b"\x0a", values.utf8(value))
    if kind == values.BOOL:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind == values.INT:
        return b"\x18" + _varint(value)
    if kind == values.DOUBLE:
        return b"\x21" + _D.pack(value)
    if kind == values.ARRAY:
        return _ld(b"\x2a", b"".join(_ld(b"\x0a", _any(v)) for v in value))
    if kind == values.KVLIST:
        return _ld(b"\x32", b"".join(_ld(b"\x0a", _kv(k, v)) for k, v in value.items()))
    return _ld(b"\x3a", value)  # bytes


def _kv(key: Any, value: Any) -> bytes:
    """A ``KeyValue`` message."""
    return _ld(b"\x0a", values.utf8(key)) + _ld(b"\x12", _any(value))


def _attribute(tag: bytes, key: str, value: Any) -> bytes:
    """One attribute as a field of its message, cached for scalar values: the attributes of
    one process repeat in every span it sends. Not zero floats: ``-0.0 == 0.0`` as a key."""
    if type(value) in (str, int, bool) or (type(value) is float and value):
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


class OwnAttributes:
    """Attributes each call has a value of its own for (a task's key, its attempt), their
    keys encoded once: ``encode()`` writes a call's for ``TaskSpans.encode(own=...)``."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = [(key, _ld(b"\x0a", values.utf8(key))) for key in keys]

    def encode(self, own: Sequence[str | int]) -> bytes:
        """The attribute fields of ``own``, the values in the order of the keys."""
        out = b""
        for (key, head), value in zip(self._keys, own, strict=True):
            if type(value) is str:
                data = value.encode("utf-8", "replace")
                n = len(head) + len(data) + 4
                if n < 0x80:  # every length one byte: KeyValue{key, AnyValue{string}}
                    out += b"\x4a%c%s\x12%c\x0a%c%s" % (n, head, len(data) + 2, len(data), data)
                    continue
            elif type(value) is int and 0 <= value < 0x80 and len(head) < 0x7C:
                out += b"\x4a%c%s\x12\x02\x18%c" % (len(head) + 4, head, value)
                continue
            out += _ld(b"\x4a", _kv(key, value))
        return out


def _head(trace_id: str) -> bytes:
    """The trace id field (1), which comes before the span id (2)."""
    return b"\x0a\x10" + bytes.fromhex(trace_id)


def _parent_name_kind(parent_id: str | None, name: str, kind: int) -> bytes:
    parent = b"\x22\x08" + bytes.fromhex(parent_id) if parent_id else b""
    # SDK INTERNAL 0 = OTLP 1
    return parent + _ld(b"\x2a", values.utf8(name)) + b"\x30" + _varint(kind + 1)


def _span(record: SpanData | EncodedSpan) -> bytes:
    """A ``Span`` message."""
    if "encoded" in record:  # encoded where it ended (a pool task: see TaskSpans)
        return record["encoded"]
    parts = [
        _head(record["trace"]),
        b"\x12\x08" + bytes.fromhex(record["span"]),
        _parent_name_kind(record["parent"], record["name"], int(record.get("kind", 0))),
    ]
    parts.append(b"\x39" + _Q.pack(int(record["start"])))
    parts.append(b"\x41" + _Q.pack(int(record.get("end", record["start"]))))
    parts.append(_attributes(b"\x4a", record.get("attrs")))
    for name, ts, attrs in record.get("events") or ():
        event = b"\x09" + _Q.pack(int(ts)) + _ld(b"\x12", values.utf8(name))
        parts.append(_ld(b"\x5a", event + _attributes(b"\x1a", attrs)))
    for trace_id, span_id, attrs in record.get("links") or ():
        link = b"\x0a\x10" + bytes.fromhex(trace_id) + b"\x12\x08" + bytes.fromhex(span_id)
        parts.append(_ld(b"\x6a", link + _attributes(b"\x22", attrs)))
    code = int(record.get("status") or 0)
    message = (record.get("message") or "") if code else ""  # as otlpjson: only with a code
    status = (_ld(b"\x12", values.utf8(message)) if message else b"") + (
        b"\x18" + _varint(code) if code else b""
    )
    parts.append(_ld(b"\x7a", status))
    return b"".join(parts)


_UNSET = _ld(b"\x7a", b"")  # the status of a span that ended without one


class TaskSpans:
    """Writes the spans of one kind of call in one process (a pool task's function, submitted
    from one span) as ``Span`` messages, the same bytes ``_span`` writes for their records:
    what they share (ids, name, the process's attributes) encoded once, each call's own parts
    (its arguments' reprs, its CPU time) when it ends. For calls that ended with no status,
    events or links."""

    __slots__ = ("_attrs", "_head", "_middle", "end_at")
    CPU_BACK = len(_UNSET) + 8  # where the CPU time's double starts, from the end

    def __init__(self, trace_id: str, parent_id: str | None, name: str, attrs: Mapping[str, Any]):
        self._head = _head(trace_id) + b"\x12\x08"
        self._middle = _parent_name_kind(parent_id, name, 0) + b"\x39"
        self._attrs = _attributes(b"\x4a", attrs)
        # Where the end time's 8 bytes are in every message: after the span id, the parent,
        # the name, the kind and the start time (a message made before the call has its end
        # written in later, with its CPU time, CPU_BACK bytes from the end).
        self.end_at = len(self._head) + 8 + len(self._middle) + 8 + 1

    def encode(
        self,
        span_id: str,
        start: int,
        end: int,
        args: list[str] | None,
        kwargs: Mapping[str, str],
        cpu: float,
        own: bytes = b"",
    ) -> bytes:
        """The ``Span`` message of one call: the shared attributes, the call's ``own`` (from
        ``attributes()``), then ``names.ARGS``, one ``names.KWARGS_PREFIX`` attribute per
        keyword argument and ``names.TASK_CPU``."""
        head = b"%s%s%s%s\x41%s%s%s" % (
            self._head, bytes.fromhex(span_id), self._middle, _Q.pack(start), _Q.pack(end),
            self._attrs, own,
        )
        if args is not None:
            items = b""
            for text in args:
                data = text.encode("utf-8", "replace")
                n = len(data)
                # AnyValue{string} in ArrayValue.values: two lengths, one byte each if short.
                items += (_ITEM[n] if n < 126 else _ld(b"\x0a", _ld(b"\x0a", data))[:-n]) + data
            n = len(items)
            if n < 120:  # ArrayValue in AnyValue in KeyValue, all of it short
                head += _ARGS_SHORT[n] + items
            else:
                head += _ld(b"\x4a", _ARGS_KEY + _ld(b"\x12", _ld(b"\x2a", items)))
        for key, text in kwargs.items():
            head += _ld(b"\x4a", _kv(KWARGS_PREFIX + key, text))
        return head + _CPU_KEY + _D.pack(cpu) + _UNSET


_ARGS_KEY = _ld(b"\x0a", ARGS.encode())
# The bytes before an argument's text of n < 126 bytes: ``_ld(b"\x0a", _ld(b"\x0a", text))``.
_ITEM = [b"\x0a" + bytes([n + 2]) + b"\x0a" + bytes([n]) for n in range(126)]
# The bytes before the arguments' items of n < 120 bytes in all, in the ARGS attribute.
_ARGS_SHORT = [
    _ld(b"\x4a", _ARGS_KEY + _ld(b"\x12", _ld(b"\x2a", bytes(n))))[:-n or None]
    for n in range(120)
]
# The CPU time attribute up to its double: the KeyValue (13 bytes of value) in its field.
_CPU_KEY = _ld(b"\x4a", _ld(b"\x0a", TASK_CPU.encode()) + b"\x12\x09\x21" + bytes(8))[:-8]


_R = TypeVar("_R", SpanData, SpanData | EncodedSpan)


def by_scope(records: Iterable[_R]) -> dict[str, list[_R]]:
    """Records grouped by instrumentation scope (proctrace's own when a record names none;
    spans encoded where they ended are proctrace's)."""
    scopes: dict[str, list[_R]] = {}
    for record in records:
        scope = None if "encoded" in record else record.get("scope")
        scopes.setdefault(scope or SCOPE, []).append(record)
    return scopes


def scope_version(name: str) -> str | None:
    return VERSION if name == SCOPE else None


def serialized_request(
    records: Sequence[SpanData | EncodedSpan], resource: Mapping[str, Any]
) -> bytes:
    """An ``ExportTraceServiceRequest``, serialized. Its parts are joined once, at the end:
    each nested message made whole on its own copied the batch again (six copies of a
    150 kB batch, each a fresh allocation the size of it)."""
    parts = [_ld(b"\x0a", _attributes(b"\x0a", resource))]  # ResourceSpans.resource
    for name, group in by_scope(records).items():
        scope = _ld(b"\x0a", values.utf8(name))
        version = scope_version(name)
        if version:
            scope += _ld(b"\x12", version.encode())
        scope = _ld(b"\x0a", scope)  # ScopeSpans.scope
        spans = [_ld(b"\x12", _span(r)) for r in group]  # ScopeSpans.spans
        parts.append(b"\x12" + _varint(len(scope) + sum(map(len, spans))))
        parts.append(scope)
        parts.extend(spans)
    return b"".join([b"\x0a", _varint(sum(map(len, parts))), *parts])
