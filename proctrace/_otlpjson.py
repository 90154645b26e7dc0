"""Trace files: OTLP JSON, one ``ExportTraceServiceRequest`` per line.

This is what the OpenTelemetry Collector's file exporter writes: protobuf's
JSON mapping with lowerCamelCase keys, integer enums and hex-encoded trace and
span ids (the OTLP/JSON exception to protobuf's base64 for bytes).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _ids(obj: dict[str, Any], convert: Any) -> None:
    for key in _ID_KEYS:
        if obj.get(key):
            obj[key] = convert(obj[key])


def _walk_spans(request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for resource_spans in request.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            yield from scope_spans.get("spans", ())


def open_private(path: str) -> int:
    """Open ``path`` for appending, created with mode 0600 in a 0700 directory."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def append(path: str, records: Sequence[Mapping[str, Any]], resource: Mapping[str, Any]) -> None:
    """Append one export request holding ``records`` to the trace file at ``path``."""
    from . import _otlp

    request = _otlp.json_request(records, resource)
    line = (json.dumps(request, separators=(",", ":")) + "\n").encode()
    fd = open_private(path)
    try:
        while line:
            line = line[os.write(fd, line) :]
    finally:
        os.close(fd)


def read(path: str) -> Iterator[dict[str, Any]]:
    """Export requests from a trace file, as dicts with hex ids; bad lines are skipped."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                request = json.loads(line)
            except ValueError:
                continue
            if isinstance(request, dict):
                yield request


def to_protobuf(request: dict[str, Any]) -> Any:
    """An ``ExportTraceServiceRequest`` message from one line of a trace file."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    def to_b64(value: str) -> str:
        return base64.b64encode(bytes.fromhex(value)).decode()

    copy = json.loads(json.dumps(request))
    for span in _walk_spans(copy):
        _ids(span, to_b64)
        for link in span.get("links", ()):
            _ids(link, to_b64)
    return json_format.ParseDict(copy, ExportTraceServiceRequest())
