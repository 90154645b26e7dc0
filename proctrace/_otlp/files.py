"""Trace files: OTLP JSON, one ``ExportTraceServiceRequest`` per line, private to the user.

This is what the OpenTelemetry Collector's file exporter writes: protobuf's
JSON mapping with lowerCamelCase keys, integer enums and hex-encoded trace and
span ids (the OTLP/JSON exception to protobuf's base64 for bytes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .._core.records import SpanData
from . import otlpjson


def open_private(path: str) -> int:
    """Open ``path`` for appending, created with mode 0600 in a 0700 directory."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def append(path: str, records: Sequence[SpanData], resource: Mapping[str, Any]) -> None:
    """Append one export request holding ``records`` to the trace file at ``path``."""
    line = otlpjson.dumps(records, resource)
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
