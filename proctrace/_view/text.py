"""``proctrace view``: each trace as a tree of processes and spans, as text.

Name, pid, parent pid, start method, duration, status, exit code and
arguments, with colour on a terminal.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from .spans import ViewSpan


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
