"""``proctrace view``: each trace as a tree of processes and spans, as text.

A row per span: name, process name, pid, parent pid, start method, duration, exit code,
status; under it the arguments and the resources the process used. Same-name siblings of a
big run are one line (count, p50/p99/max duration, errors), their errors listed one by one;
``expand_all`` lists every span instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .._core import names
from . import spans as _spans
from .spans import Group, ViewSpan

MAX_INDENT = 60  # deeper spans are drawn at this depth, so a line stays short


class _Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color and text else text


def _describe(span: ViewSpan, style: _Style) -> str:
    attrs = span.attributes
    parts = [style(span.name, "1")]
    where = []
    if names.PROCESS_NAME in attrs:
        where.append(str(attrs[names.PROCESS_NAME]))
    if names.PID in attrs:
        where.append(f"pid {attrs[names.PID]}")
        if names.PARENT_PID in attrs:
            where.append(f"ppid {attrs[names.PARENT_PID]}")
        if names.START_METHOD in attrs:
            where.append(str(attrs[names.START_METHOD]))
    parts.append(style(" ".join(where), "2"))
    parts.append(_spans.ms(span.duration_ms))
    if names.EXIT_CODE in attrs:
        parts.append(f"exit {attrs[names.EXIT_CODE]}")
    if span.error:
        parts.append(style("ERROR" + (f": {_one_line(span.message)}" if span.message else ""),
                           "31"))
    return "  ".join(p for p in parts if p)


def _one_line(text: str, limit: int = 200) -> str:
    text = " ⏎ ".join(text.strip().splitlines())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _notes(span: ViewSpan) -> list[str]:
    """The lines under a span: its arguments, resource use and exception."""
    attrs, notes = span.attributes, []
    args = attrs.get(names.ARGS)
    shown = [str(a) for a in args] if isinstance(args, list) else [str(args)] if args else []
    prefix = names.KWARGS_PREFIX
    shown += [f"{k.removeprefix(prefix)}={v}" for k, v in attrs.items() if k.startswith(prefix)]
    if shown:
        notes.append(f"args: {_one_line(', '.join(shown))}")
    used = _spans.resource_use(span)
    if used:
        notes.append(f"used: {used}")
    for event in span.events:
        if event["name"] == "exception":
            detail = event["attributes"]
            kind, message = detail.get("exception.type", ""), detail.get("exception.message", "")
            if f"{kind}: {message}" != span.message:
                notes.append(_one_line(f"exception: {kind}: {message}"))
            break
    return notes


def _group(group: Group, style: _Style) -> str:
    stats, errors = group.stats(), len(group.errors)
    times = "\u00d7"  # the multiplication sign: "5,000 x cell"
    line = f"{len(group.members):,} {times} {style(group.name, '1')}" + "".join(
        f"  {key} {_spans.ms(value)}" for key, value in stats.items()
    ) + "  "
    line += style(f"{errors:,} error{'' if errors == 1 else 's'}", "31" if errors else "")
    pids = group.pids()
    if len(pids) > 1:
        line += style(f"  in {len(pids):,} processes", "2")
    below = sum(1 for _ in _spans.walk(group.members)) - len(group.members)
    if below:
        line += style(f"  {below:,} spans under them", "2")
    return line


def render(
    roots: Mapping[str, list[ViewSpan]], *, color: bool = False, expand_all: bool = False
) -> Iterator[str]:
    """Lines of text: a header per trace, the processes that used most, then its tree."""
    style = _Style(color)
    at = None if expand_all else _spans.GROUP_AT
    for trace_id, top in roots.items():
        every = list(_spans.walk(top))
        start = min(s.start for s in every)
        end = max(s.end for s in every)
        services = sorted({s.service for s in top if s.service})
        errors = sum(1 for s in every if s.error)
        header = f"trace {trace_id}  {', '.join(services)}  {len(every):,} spans  " \
                 f"{_spans.ms((end - start) / 1e6)}"
        if errors:
            header += f"  {errors:,} error{'' if errors == 1 else 's'}"
        yield style(header, "1;36")
        for line in _spans.top_use(every):
            yield style(f"  {line}", "36")
        yield from _tree(top, at, style)
        yield ""


def _tree(top: list[ViewSpan], at: int | None, style: _Style) -> Iterator[str]:
    """The tree's lines, without recursion (a trace can be deep)."""
    stack: list[tuple[ViewSpan | Group, str, bool]] = []

    def push(items: list[ViewSpan | Group], indent: str) -> None:
        listed: list[ViewSpan | Group] = []
        for item in items:
            listed.append(item)
            if isinstance(item, Group):
                listed += item.errors  # errors are always shown one by one
        stack.extend(
            (item, indent, i == len(listed) - 1) for i, item in reversed(list(enumerate(listed)))
        )

    push(_spans.grouped(top, at), "")
    while stack:
        item, indent, last = stack.pop()
        branch = "└─ " if last else "├─ "
        inner = indent + ("   " if last else "│  ") if len(indent) < 3 * MAX_INDENT else indent
        if isinstance(item, Group):
            yield indent + branch + _group(item, style)
            continue
        yield indent + branch + _describe(item, style)
        for note in _notes(item):
            yield inner + style(f"  {note}", "2")
        push(_spans.grouped(item.children, at), inner)
