"""``proctrace view``: the process tree of a run from its local trace files, as text.

Reads the OTLP/JSON files proctrace writes (the embedded default and the
undelivered-spans file), puts the spans of each trace together across files,
and prints each trace as a tree: name, pid, parent pid, start method, duration,
status, exit code and arguments.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from . import _otlpjson

STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


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


class _Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text


def _describe(span: ViewSpan, style: _Style) -> str:
    attrs = span.attributes
    parts = [style(span.name, "1")]
    if "process.pid" in attrs:
        where = f"pid {attrs['process.pid']}"
        if "process.parent_pid" in attrs:
            where += f" ppid {attrs['process.parent_pid']}"
        if "proctrace.start_method" in attrs:
            where += f" {attrs['proctrace.start_method']}"
        parts.append(style(where, "2"))
    parts.append(f"{span.duration_ms:.1f} ms")
    if "process.exit.code" in attrs:
        parts.append(f"exit {attrs['process.exit.code']}")
    if span.status == "ERROR":
        parts.append(style("ERROR" + (f": {span.message}" if span.message else ""), "31"))
    return "  ".join(parts)


def _arguments(span: ViewSpan) -> str:
    attrs = span.attributes
    shown = [str(a) for a in attrs.get("proctrace.args", ())]
    prefix = "proctrace.kwargs."
    shown += [f"{k.removeprefix(prefix)}={v}" for k, v in attrs.items() if k.startswith(prefix)]
    return ", ".join(shown)


def render(roots: Mapping[str, list[ViewSpan]], *, color: bool = False) -> Iterator[str]:
    """Lines of text: a header per trace, then its tree."""
    style = _Style(color)
    for trace_id, top in roots.items():
        count = sum(1 for _ in _walk(top))
        start = min(s.start for s in top)
        end = max(s.end for s in _walk(top))
        services = sorted({s.service for s in top if s.service})
        yield style(
            f"trace {trace_id}  {', '.join(services)}  {count} spans  "
            f"{(end - start) / 1e6:.1f} ms",
            "1;36",
        )
        for i, span in enumerate(top):
            yield from _lines(span, "", i == len(top) - 1, style)
        yield ""


def _walk(spans: Iterable[ViewSpan]) -> Iterator[ViewSpan]:
    for span in spans:
        yield span
        yield from _walk(span.children)


def _lines(span: ViewSpan, indent: str, last: bool, style: _Style) -> Iterator[str]:
    yield indent + ("└─ " if last else "├─ ") + _describe(span, style)
    inner = indent + ("   " if last else "│  ")
    arguments = _arguments(span)
    if arguments:
        yield inner + style(f"  args: {arguments}", "2")
    for i, child in enumerate(span.children):
        yield from _lines(child, inner, i == len(span.children) - 1, style)
