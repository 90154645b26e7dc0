"""Spans put together into trees, and what the views say about them.

Each trace's spans (read by ``reading``) are joined into a tree by parent. Same-name siblings
of a big run are summarised as one group (count, p50/p99/max duration, errors); processes
are told apart from the pool tasks they ran, and their resource use is ranked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .._core import names

GROUP_AT = 6
"""Siblings of one name are shown as one summary line from this many on (``--all``: never)."""

CPU_USER, CPU_SYSTEM = "process.cpu.user_s", "process.cpu.system_s"
MEMORY_PEAK = "process.memory.peak_bytes"
SWITCHES_VOLUNTARY = "process.context_switches.voluntary"
SWITCHES_INVOLUNTARY = "process.context_switches.involuntary"
TASK_CPU = "proctrace.task.cpu_s"
# Attributes only a process span has (a pool task has the worker's pid, not these).
_PROCESS_ONLY = (
    names.EXIT_CODE, names.ABNORMAL_END, names.RUNNING_AT_EXIT, names.TERMINATED,
    CPU_USER, CPU_SYSTEM, MEMORY_PEAK,
)


@dataclasses.dataclass(eq=False)
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
    kind: str = ""

    @property
    def duration_ms(self) -> float:
        return max(self.end - self.start, 0) / 1e6

    @property
    def error(self) -> bool:
        return self.status == "ERROR"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.span_id,
            "parent": self.parent_id,
            "name": self.name,
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "status": self.status,
            "message": self.message,
            "service": self.service,
            "attributes": self.attributes,
            "events": self.events,
        }


def trees(spans: Iterable[ViewSpan]) -> dict[str, list[ViewSpan]]:
    """Roots of each trace (spans whose parent is not in the files), children by start time.

    A span in a parent cycle (files made by hand can say anything) becomes a root, so every
    span is shown once."""
    with no_gc():
        return _trees(spans)


def _trees(spans: Iterable[ViewSpan]) -> dict[str, list[ViewSpan]]:
    ordered = sorted(spans, key=lambda s: (s.start, s.name))
    by_id = {(s.trace_id, s.span_id): s for s in ordered}
    parent_of: dict[int, ViewSpan] = {}
    for span in ordered:
        span.children = []
        parent = by_id.get((span.trace_id, span.parent_id or ""))
        if parent is not None and parent is not span:
            parent_of[id(span)] = parent
    roots: dict[str, list[ViewSpan]] = {}
    for span in ordered:
        parent = parent_of.get(id(span))
        if parent is None:
            roots.setdefault(span.trace_id, []).append(span)
        else:
            parent.children.append(span)
    reached = {id(s) for s in walk(s for top in roots.values() for s in top)}
    for span in ordered:  # what no root reaches hangs in a cycle: cut it at its first span
        if id(span) not in reached:
            parent = parent_of[id(span)]
            parent.children.remove(span)
            roots.setdefault(span.trace_id, []).append(span)
            reached.update(id(s) for s in walk([span]))
    return roots


def walk(spans: Iterable[ViewSpan]) -> Iterator[ViewSpan]:
    """Each span, then its descendants, depth first (no recursion: trees can be deep)."""
    for top in spans:
        stack = [top]
        while stack:
            span = stack.pop()
            yield span
            stack.extend(reversed(span.children))


def walk_depth(spans: Sequence[ViewSpan]) -> Iterator[tuple[ViewSpan, int]]:
    """``walk()`` with each span's depth."""
    stack = [(s, 0) for s in reversed(spans)]
    pop, push = stack.pop, stack.append
    while stack:
        span, depth = pop()
        yield span, depth
        for child in reversed(span.children):
            push((child, depth + 1))


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """The cycle collector paused: it would walk every span kept so far again and again
    (three times the reading's time at 100,000 spans). Spans and their values hold no
    cycles, so nothing is left for it."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclasses.dataclass
class Group:
    """Same-name siblings shown as one line."""

    name: str
    members: list[ViewSpan]

    @property
    def errors(self) -> list[ViewSpan]:
        return [s for s in self.members if s.error]

    def stats(self) -> dict[str, float]:
        durations = sorted(s.duration_ms for s in self.members)
        return {
            "p50": percentile(durations, 50),
            "p99": percentile(durations, 99),
            "max": durations[-1],
        }

    def pids(self) -> set[Any]:
        return {s.attributes[names.PID] for s in self.members if names.PID in s.attributes}


def grouped(children: Sequence[ViewSpan], at: int | None = GROUP_AT) -> list[ViewSpan | Group]:
    """``children`` with each name seen ``at`` times or more made one group, placed where its
    first member was (``at`` None: no groups)."""
    if at is None or len(children) < at:
        return list(children)
    by_name: dict[str, list[ViewSpan]] = {}
    for span in children:
        by_name.setdefault(span.name, []).append(span)
    items: list[ViewSpan | Group] = []
    for span in children:
        members = by_name[span.name]
        if len(members) < at:
            items.append(span)
        elif members[0] is span:
            items.append(Group(span.name, members))
    return items


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(math.ceil(p / 100 * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1]


def is_process(span: ViewSpan) -> bool:
    """A process's own span (a child, a pool worker, the main process), not a task it ran."""
    attrs = span.attributes
    if any(key in attrs for key in _PROCESS_ONLY):
        return True
    return attrs.get(names.PROCESS_NAME) == "MainProcess" and TASK_CPU not in attrs


def number(value: Any) -> float | None:
    """A finite number from an attribute value, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def cpu_seconds(span: ViewSpan) -> float | None:
    """CPU time a process used (user + system), or a task's own, when recorded."""
    attrs = span.attributes
    user, system = number(attrs.get(CPU_USER)), number(attrs.get(CPU_SYSTEM))
    if user is not None or system is not None:
        return (user or 0.0) + (system or 0.0)
    return number(attrs.get(TASK_CPU))


def memory_bytes(span: ViewSpan) -> float | None:
    return number(span.attributes.get(MEMORY_PEAK))


def ms(value: float) -> str:
    """A duration in milliseconds, with the digits that matter."""
    if value >= 0.095 or value == 0:
        return f"{value:,.1f} ms"
    return f"{value:.2f} ms" if value >= 0.0095 else f"{value:.3f} ms"


def mib(value: float) -> str:
    return f"{value / 1048576:,.1f} MiB"


def seconds(value: float) -> str:
    """CPU time: seconds from 0.1 s on, milliseconds below."""
    if value == 0:
        return "0 s"
    return f"{value:,.2f} s" if value >= 0.1 else ms(value * 1000)


def resource_use(span: ViewSpan) -> str:
    """What the span says its process (or task) used: CPU, peak memory, context switches."""
    attrs, parts = span.attributes, []
    user, system = number(attrs.get(CPU_USER)), number(attrs.get(CPU_SYSTEM))
    if user is not None or system is not None:
        parts.append(f"cpu {seconds((user or 0) + (system or 0))} "
                     f"(user {seconds(user or 0)}, system {seconds(system or 0)})")
    task = number(attrs.get(TASK_CPU))
    if task is not None:
        parts.append(f"task cpu {seconds(task)}")
    memory = number(attrs.get(MEMORY_PEAK))
    if memory is not None:
        parts.append(f"peak memory {mib(memory)}")
    voluntary = number(attrs.get(SWITCHES_VOLUNTARY))
    involuntary = number(attrs.get(SWITCHES_INVOLUNTARY))
    if voluntary is not None or involuntary is not None:
        parts.append(f"context switches {int(voluntary or 0):,} voluntary, "
                     f"{int(involuntary or 0):,} involuntary")
    return "  ".join(parts)


def who(span: ViewSpan) -> str:
    """A process as people name it: its multiprocessing name and pid."""
    attrs = span.attributes
    name = attrs.get(names.PROCESS_NAME)
    pid = f"pid {attrs[names.PID]}" if names.PID in attrs else ""
    return " ".join(str(p) for p in (name or span.name, pid) if p)


def top_use(spans: Iterable[ViewSpan], top: int = 3) -> list[str]:
    """Lines naming the processes that used the most CPU and memory (none if unrecorded)."""
    processes = [s for s in spans if is_process(s)]
    lines = []
    for label, measure, show in (
        ("most cpu", cpu_seconds, seconds), ("most memory", memory_bytes, mib)
    ):
        used = [(value, s) for s in processes if (value := measure(s)) is not None]
        used.sort(key=lambda pair: -pair[0])
        if used:
            lines.append(f"{label}: " + ", ".join(
                f"{who(s)} {show(value)}" for value, s in used[:top]
            ))
    return lines
