"""Trace files read into spans, whatever they hold: every problem said in one line per file.

Reads OTLP JSON as proctrace writes it, and as other tools do: the OpenTelemetry Collector's
file exporter, pretty-printed requests, enum names (``"STATUS_CODE_ERROR"``) or numbers, ids
in hex or base64 (``_otlp.files.read`` parses; this turns requests into spans). A record or
span of the wrong shape is counted and dropped, never raised.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterable, Mapping
from typing import Any

from .._core.names import STATUS_NAMES
from .._otlp import files as _files
from .spans import ViewSpan, no_gc

SUFFIXES = (".jsonl", ".json")
_MAX_DEPTH = 16  # deeper attribute values (lists in lists...) are shown as "…"
_SHOWN = 5  # problems named per file; the others are counted
_STATUS = {**{str(k): v for k, v in STATUS_NAMES.items()},
           **{f"STATUS_CODE_{v}": v for v in STATUS_NAMES.values()}}
_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")


class BadSpan(ValueError):
    """A span this viewer cannot use, and why."""


class Reading:
    """Spans read from files and directories, and one line per path that had problems."""

    def __init__(self) -> None:
        self.spans: dict[tuple[str, str], ViewSpan] = {}
        self.notes: list[str] = []
        self.files: list[str] = []

    def add(self, paths: Iterable[str]) -> Reading:
        with no_gc():
            for path in paths:
                self._add(path)
        return self

    def _add(self, path: str) -> None:
        if os.path.isdir(path):
            try:
                found = sorted(os.path.join(path, n) for n in os.listdir(path)
                               if n.endswith(SUFFIXES))
            except OSError as exc:
                self.notes.append(f"{path}: cannot be listed ({exc.strerror or exc})")
                return
            found = [f for f in found if os.path.isfile(f)]
            if not found:
                self.notes.append(f"{path}: no trace files (*.jsonl, *.json) in it")
            for name in found:
                self.read_file(name)
        else:
            self.read_file(path)


    def read_file(self, path: str) -> None:
        self.files.append(path)
        problems: list[tuple[int, str]] = []
        count = 0

        def say(line: int, why: str) -> None:
            nonlocal count
            count += 1
            if len(problems) < _SHOWN:
                problems.append((line, why))

        before = len(self.spans)
        try:
            kind = os.stat(path).st_mode
            if not (stat.S_ISREG(kind) or stat.S_ISFIFO(kind)):
                raise OSError(0, "not a regular file")
            for line, request in _files.read_lines(path, say):
                self._request(request, line, say)
        except OSError as exc:
            self.notes.append(f"{path}: cannot be read ({exc.strerror or exc})")
            return
        if problems:
            line, why = problems[0]
            more = ""
            if count > 1:
                lines = ", ".join(str(n) for n, _ in problems[1:])
                more = f"; {count - 1} more problems (lines {lines}" \
                       f"{', ...' if count > len(problems) else ''})"
            self.notes.append(f"{path}: line {line}: {why}{more}")
        elif len(self.spans) == before:
            self.notes.append(f"{path}: no spans in it")

    def _request(self, request: Mapping[str, Any], line: int, say: _files.Report) -> None:
        bad, first = 0, ""
        for resource_spans in _list(request.get("resourceSpans")):
            resource = _dict(_dict(resource_spans).get("resource"))
            service = str(attributes(resource.get("attributes")).get("service.name", ""))
            for scope_spans in _list(_dict(resource_spans).get("scopeSpans")):
                for raw in _list(_dict(scope_spans).get("spans")):
                    try:
                        span = to_span(raw, service)
                    except (BadSpan, RecursionError) as exc:
                        bad += 1
                        first = first or str(exc) or "nested too deeply"
                        continue
                    self.spans.setdefault((span.trace_id, span.span_id), span)
        if bad:
            say(line, f"{bad} span{'s' if bad > 1 else ''} dropped ({first})")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def to_span(raw: Any, service: str) -> ViewSpan:
    """A ``ViewSpan`` from one OTLP JSON span; ``BadSpan`` says what makes it unusable."""
    if not isinstance(raw, dict):
        raise BadSpan(f"a span is a JSON {type(raw).__name__}, not an object")
    trace_id, span_id = _id(raw, "traceId"), _id(raw, "spanId")
    parent = raw.get("parentSpanId")
    status = _dict(raw.get("status"))
    code = status.get("code", 0)
    start = _nanos(raw, "startTimeUnixNano")
    end = _nanos(raw, "endTimeUnixNano") if "endTimeUnixNano" in raw else start
    kind = raw.get("kind", 0)
    if isinstance(kind, str) and kind.startswith("SPAN_KIND_"):
        kind = kind.removeprefix("SPAN_KIND_")
    elif isinstance(kind, int) and not isinstance(kind, bool) and 0 <= kind < len(_KINDS):
        kind = _KINDS[kind]
    return ViewSpan(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent.lower() if isinstance(parent, str) and parent else None,
        name=str(raw.get("name", ""))[:1000],
        start=start,
        end=end,
        status=_STATUS.get(str(code), "UNSET"),
        message=str(status.get("message", "")),
        attributes=attributes(raw.get("attributes")),
        events=[
            {
                "name": str(_dict(e).get("name", "")),
                "time": _nanos(_dict(e), "timeUnixNano", start),
                "attributes": attributes(_dict(e).get("attributes")),
            }
            for e in _list(raw.get("events"))
        ],
        service=service,
        kind=str(kind) if kind not in ("INTERNAL", "UNSPECIFIED", 0, 1) else "",
    )


def _id(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value or len(value) > 64:
        raise BadSpan(f"{key} missing or not an id")
    return value.lower()


def _nanos(raw: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = raw.get(key, default)
    try:
        if isinstance(value, str) and len(value) > 30:
            raise ValueError
        nanos = int(value)
    except (TypeError, ValueError, OverflowError):
        raise BadSpan(f"{key} is not a time in nanoseconds") from None
    if isinstance(value, bool) or not 0 <= nanos < 1 << 64:
        raise BadSpan(f"{key} is not a time in nanoseconds")
    return nanos


def attributes(items: Any, depth: int = 0) -> dict[str, Any]:
    """OTLP ``KeyValue`` list to a dict; entries of the wrong shape are left out."""
    out: dict[str, Any] = {}
    for item in _list(items):
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            out[item["key"]] = value(item.get("value"), depth)
    return out


def value(raw: Any, depth: int = 0) -> Any:
    """One OTLP ``AnyValue`` as Python: ints from their decimal text, lists, dicts."""
    if not isinstance(raw, dict) or not raw:
        return None
    if depth >= _MAX_DEPTH:
        return "…"
    key, inner = next(iter(raw.items()))
    if key == "stringValue":
        return str(inner)
    if key == "boolValue":
        return inner if isinstance(inner, bool) else str(inner).lower() == "true"
    if key == "intValue":
        try:
            return int(inner) if len(str(inner)) < 40 else str(inner)
        except (TypeError, ValueError):
            return str(inner)
    if key == "doubleValue":
        try:
            number = float(inner)
        except (TypeError, ValueError, OverflowError):
            return str(inner)
        return number if math.isfinite(number) else str(inner)
    if key == "arrayValue":
        return [value(v, depth + 1) for v in _list(_dict(inner).get("values"))]
    if key == "kvlistValue":
        return attributes(_dict(inner).get("values"), depth + 1)
    if key == "bytesValue":
        return f"bytes {inner}"
    return None


def default_files(directory: str) -> list[str]:
    """The files of the newest run under ``directory``: its trace file and undelivered file."""
    try:
        names = [n for n in os.listdir(directory) if n.endswith(".jsonl")]
    except OSError:
        return []
    if not names:
        return []
    newest = max(names, key=lambda n: os.path.getmtime(os.path.join(directory, n)))
    run = newest.removesuffix(".jsonl").removesuffix("-undelivered")
    return sorted(
        os.path.join(directory, n) for n in names if n.removesuffix(".jsonl") in
        (run, run + "-undelivered")
    )
