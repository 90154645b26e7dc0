"""Span records straight to OTLP: protobuf for the exporters, OTLP/JSON for trace files.

The agent never builds SDK span objects for export: a record is already
plain data, and turning it into an ``ExportTraceServiceRequest`` directly is
several times cheaper than ``ReadableSpan`` plus the SDK's encoder. That is
what lets one agent keep up with pools running 100,000 tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import __version__

Record = Mapping[str, Any]
PROCTRACE_SCOPE = "proctrace"


def _json_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
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
        "name": record["name"],
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


def _pb_value(value: Any, pb: Any) -> Any:
    common = pb.common
    if isinstance(value, bool):
        return common.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common.AnyValue(int_value=value)
    if isinstance(value, float):
        return common.AnyValue(double_value=value)
    if isinstance(value, str):
        return common.AnyValue(string_value=value)
    if isinstance(value, list | tuple):
        return common.AnyValue(
            array_value=common.ArrayValue(values=[_pb_value(v, pb) for v in value])
        )
    if isinstance(value, Mapping):
        return common.AnyValue(
            kvlist_value=common.KeyValueList(values=_pb_attributes(value, pb))
        )
    return common.AnyValue(string_value=str(value))


def _pb_attributes(attrs: Mapping[str, Any] | None, pb: Any) -> list[Any]:
    key_value = pb.common.KeyValue
    return [key_value(key=str(k), value=_pb_value(v, pb)) for k, v in (attrs or {}).items()]


class _Protos:
    """The generated OTLP modules, imported once, on first use."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        from opentelemetry.proto.common.v1 import common_pb2
        from opentelemetry.proto.resource.v1 import resource_pb2
        from opentelemetry.proto.trace.v1 import trace_pb2

        self.service, self.common, self.resource, self.trace = (
            trace_service_pb2,
            common_pb2,
            resource_pb2,
            trace_pb2,
        )


_protos: _Protos | None = None


def _pb() -> _Protos:
    global _protos
    if _protos is None:
        _protos = _Protos()
    return _protos


def _pb_span(record: Record, pb: _Protos) -> Any:
    trace = pb.trace
    return trace.Span(
        trace_id=bytes.fromhex(record["trace"]),
        span_id=bytes.fromhex(record["span"]),
        parent_span_id=bytes.fromhex(record["parent"]) if record.get("parent") else b"",
        name=record["name"],
        kind=int(record.get("kind", 0)) + 1,
        start_time_unix_nano=int(record["start"]),
        end_time_unix_nano=int(record["end"]),
        attributes=_pb_attributes(record.get("attrs"), pb),
        events=[
            trace.Span.Event(time_unix_nano=int(ts), name=name, attributes=_pb_attributes(a, pb))
            for name, ts, a in record.get("events") or ()
        ],
        links=[
            trace.Span.Link(
                trace_id=bytes.fromhex(t), span_id=bytes.fromhex(s),
                attributes=_pb_attributes(a, pb),
            )
            for t, s, a in record.get("links") or ()
        ],
        status=trace.Status(
            code=int(record.get("status") or 0), message=record.get("message") or ""
        ),
    )


def request(records: Sequence[Record], resource: Mapping[str, Any]) -> Any:
    """An ``ExportTraceServiceRequest`` protobuf message for ``records``."""
    pb = _pb()
    scope_spans = [
        pb.trace.ScopeSpans(
            scope=pb.common.InstrumentationScope(name=name, version=_scope_version(name) or ""),
            spans=[_pb_span(r, pb) for r in group],
        )
        for name, group in _by_scope(records).items()
    ]
    return pb.service.ExportTraceServiceRequest(
        resource_spans=[
            pb.trace.ResourceSpans(
                resource=pb.resource.Resource(attributes=_pb_attributes(resource, pb)),
                scope_spans=scope_spans,
            )
        ]
    )
