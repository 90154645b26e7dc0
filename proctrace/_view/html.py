"""``proctrace view --html``: one self-contained page, a waterfall and one lane per process.

The page (``page.html``: markup, style and script, no network) gets two JSON blocks: a
compact table of rows the script draws from at once (parent, depth, name, times, status,
pid, process kind, CPU, memory), and every span's full record (ids, attributes, events),
parsed only when a span is first opened, so 100,000 spans draw in well under 2 s.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

from .._core import names
from . import spans as _spans
from .spans import ViewSpan, no_gc

_STATUS = {name: code for code, name in names.STATUS_NAMES.items()}


def page(roots: Mapping[str, list[ViewSpan]], title: str) -> str:
    """The whole HTML document for the traces in ``roots``."""
    with no_gc():
        return _page(roots, title)


def _page(roots: Mapping[str, list[ViewSpan]], title: str) -> str:
    compact, full = [], []
    for trace_id, top in roots.items():
        with_depth = list(_spans.walk_depth(top))
        rows, records = _trace(with_depth)
        every = [span for span, _ in with_depth]
        start = min(s.start for s in every)
        end = max(max(s.end, s.start) for s in every)
        compact.append({
            "id": trace_id,
            "services": sorted({s.service for s in top if s.service}),
            "duration": (end - start) / 1e6,
            "errors": sum(1 for s in every if s.error),
            "summary": _spans.top_use(every),
            "groupAt": _spans.GROUP_AT,
            **rows,
        })
        full.append({"id": trace_id, "spans": records})
    template = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
    parts = {"TITLE": html.escape(title), "ROWS": _json(compact), "DATA": _json(full)}
    # One pass: a span named "__DATA__" stays a name.
    return re.sub(r"__(TITLE|ROWS|DATA)__", lambda m: parts[m.group(1)], template)


def _trace(
    every: list[tuple[ViewSpan, int]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The compact rows of one trace (depth-first order) and the full records, same order."""
    strings: dict[str, int] = {}

    def intern(text: str) -> int:
        return strings.setdefault(text, len(strings))

    t0 = min(s.start for s, _ in every)
    index: dict[int, int] = {}
    parent_of: dict[int, int] = {}
    rows: list[list[Any]] = []
    records: list[dict[str, Any]] = []
    for span, depth in every:
        i = index[id(span)] = len(rows)
        for child in span.children:
            parent_of[id(child)] = i
        attrs = span.attributes
        pid = attrs.get(names.PID)
        process = _spans.is_process(span)
        cpu, memory = _spans.cpu_seconds(span), _spans.memory_bytes(span)
        rows.append([
            parent_of.get(id(span), -1),
            depth,
            intern(span.name),
            round((span.start - t0) / 1e6, 6),
            round(span.duration_ms, 6),
            _STATUS.get(span.status, 0),
            pid if isinstance(pid, int | str) and not isinstance(pid, bool) else None,
            intern(_meta(span)),
            intern(str(attrs.get(names.PROCESS_NAME, ""))),
            1 if process else 2 if pid is not None else 0,
            None if cpu is None else round(cpu, 6),
            memory,
            span.span_id,
        ])
        record = span.to_json()
        record["depth"] = depth
        record["used"] = _spans.resource_use(span)
        records.append(record)
    return {"t0": t0, "strings": list(strings), "rows": rows}, records


def _meta(span: ViewSpan) -> str:
    """What the row says after the span's name: process name, pids, start method, exit."""
    attrs, parts = span.attributes, []
    for key, label in ((names.PROCESS_NAME, ""), (names.PID, "pid "),
                       (names.PARENT_PID, "ppid "), (names.START_METHOD, "")):
        if key in attrs:
            parts.append(f"{label}{attrs[key]}")
    if names.EXIT_CODE in attrs:
        parts.append(f"exit {attrs[names.EXIT_CODE]}")
    return " ".join(parts)


def _json(value: Any) -> str:
    """JSON safe inside a script element: no "<" at all ("</script>", "<!--")."""
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:  # NaN or infinity somewhere: JSON has no word for them
        text = json.dumps(_finite(value), separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value
