"""Span records to OTLP/JSON, and OTLP/JSON back to protobuf messages.

This is what the OpenTelemetry Collector's file exporter writes: protobuf's
JSON mapping with lowerCamelCase keys, integer enums and hex-encoded trace and
span ids (the OTLP/JSON exception to protobuf's base64 for bytes). Every value
goes through the same clean-up as the protobuf writer's (``values``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .._core.records import SpanData
from . import values
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


def request(records: Sequence[SpanData], resource: Mapping[str, Any]) -> dict[str, Any]:
    """One OTLP/JSON ``ExportTraceServiceRequest`` (hex ids, as the Collector writes them)."""
    scope_spans = []
    for name, group in by_scope(records).items():
        scope: dict[str, Any] = {"name": values.text(name)}
        version = scope_version(name)
        if version:
            scope["version"] = version
        scope_spans.append({"scope": scope, "spans": [_span(r) for r in group]})
    return {
        "resourceSpans": [
            {"resource": {"attributes": attributes(resource)}, "scopeSpans": scope_spans}
        ]
    }


def dumps(records: Sequence[SpanData], resource: Mapping[str, Any]) -> bytes:
    """``request()`` as one line of a trace file (strict JSON, newline-terminated)."""
    return (json.dumps(request(records, resource), separators=(",", ":"), allow_nan=False)
            + "\n").encode()


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
