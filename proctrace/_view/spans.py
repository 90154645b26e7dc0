"""Trace files read into trees: the spans of each trace put together across files.

Reads the OTLP/JSON files proctrace writes (the embedded default and the
undelivered-spans file) and joins each trace's spans into a tree by parent.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from typing import Any

from .._core.names import STATUS_NAMES as STATUS
from .._otlp import files as _otlpjson


@dataclasses.dataclass
class ViewSpan:
    """One span as read from a trace file."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start: int
    end: int
    status: str
    message: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    service: str
    children: list[ViewSpan] = dataclasses.field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start) / 1e6

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.span_id,
            "parent": self.parent_id,
            "name": self.name,
            "start": self.start,
            "end": self.end,
            "status": self.status,
            "message": self.message,
            "attributes": self.attributes,
            "events": self.events,
        }


def _value(value: Mapping[str, Any]) -> Any:
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [_value(v) for v in value["arrayValue"].get("values", ())]
    if "kvlistValue" in value:
        return _attributes(value["kvlistValue"].get("values", ()))
    return None


def _attributes(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return {item["key"]: _value(item.get("value", {})) for item in items}


def read_spans(paths: Iterable[str]) -> list[ViewSpan]:
    """Every span in ``paths``; a span found twice (delivered and kept) counts once."""
    seen: dict[tuple[str, str], ViewSpan] = {}
    for path in paths:
        for request in _otlpjson.read(path):
            for resource_spans in request.get("resourceSpans", ()):
                resource = _attributes(resource_spans.get("resource", {}).get("attributes", ()))
                for scope_spans in resource_spans.get("scopeSpans", ()):
                    for raw in scope_spans.get("spans", ()):
                        span = _span(raw, str(resource.get("service.name", "")))
                        seen.setdefault((span.trace_id, span.span_id), span)
    return list(seen.values())


def _span(raw: Mapping[str, Any], service: str) -> ViewSpan:
    status = raw.get("status", {})
    return ViewSpan(
        trace_id=raw["traceId"],
        span_id=raw["spanId"],
        parent_id=raw.get("parentSpanId") or None,
        name=raw.get("name", ""),
        start=int(raw.get("startTimeUnixNano", 0)),
        end=int(raw.get("endTimeUnixNano", 0)),
        status=STATUS.get(int(status.get("code", 0)), "UNSET"),
        message=status.get("message", ""),
        attributes=_attributes(raw.get("attributes", ())),
        events=[
            {
                "name": e.get("name", ""),
                "time": int(e.get("timeUnixNano", 0)),
                "attributes": _attributes(e.get("attributes", ())),
            }
            for e in raw.get("events", ())
        ],
        service=service,
    )


def trees(spans: list[ViewSpan]) -> dict[str, list[ViewSpan]]:
    """Roots of each trace (spans whose parent is not in the files), children by start time."""
    by_id = {(s.trace_id, s.span_id): s for s in spans}
    roots: dict[str, list[ViewSpan]] = {}
    for span in sorted(spans, key=lambda s: (s.start, s.name)):
        parent = by_id.get((span.trace_id, span.parent_id or ""))
        if parent is not None and parent is not span:
            parent.children.append(span)
        else:
            roots.setdefault(span.trace_id, []).append(span)
    return roots


def default_files(directory: str) -> list[str]:
    """The files of the newest run under ``directory``: its trace file and undelivered file."""
    try:
        names = [n for n in os.listdir(directory) if n.endswith(".jsonl")]
    except FileNotFoundError:
        return []
    if not names:
        return []
    newest = max(names, key=lambda n: os.path.getmtime(os.path.join(directory, n)))
    run = newest.removesuffix(".jsonl").removesuffix("-undelivered")
    return sorted(
        os.path.join(directory, n) for n in names if n.removesuffix(".jsonl") in
        (run, run + "-undelivered")
    )


def expand(paths: Iterable[str]) -> list[str]:
    """Files named, and the ``*.jsonl`` files of directories named."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(
                os.path.join(path, n) for n in os.listdir(path) if n.endswith(".jsonl")
            )
        else:
            files.append(path)
    return files
