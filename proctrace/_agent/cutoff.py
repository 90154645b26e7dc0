"""Pool tasks cut off by the end of their process: a span for each, ended as its process was.

A pool worker holds the span of the task it runs in its ring's slot (``_core.ring``); when
the worker's connection ends with a task there, the collector takes that span and ties it to
the worker's own span. When the worker's span is ended (its fate decided: killed, crashed,
``os._exit``, terminated, stopped with its process group), each task it held ends at the
same time, ERROR, with the worker's reason: a program whose worker died under a task shows
which task, with its arguments, and why. A worker still running its task when the run ends
(the program killed on its own, an executor not waited for) has that task end with it,
"still running" as the worker is.
"""

from __future__ import annotations

from collections.abc import Mapping

from .._core import names
from .._core.records import SpanData
from .._otlp import encoded as _encoded
from . import processes as _processes
from .rings import Reader

DURING = "process ended during the task"
# The attributes of the process's end that say how it ended: the task's say the same.
_CARRIED = (
    names.ABNORMAL_END, names.EXIT_CODE, names.STOPPED_BY, names.TERMINATED, names.EXEC,
    names.RUNNING_AT_EXIT,
)


def held(ring: Reader | None, running: bool = False) -> SpanData | None:
    """The span of the task a process's ring holds in its slot, if any: read once the process
    is gone, or twice alike while it runs on (it may be changing it)."""
    if ring is None:
        return None
    flight = ring.in_flight()
    if not flight or (running and flight != ring.in_flight()):
        return None
    return _encoded.running(flight)


def process_of(opened: Mapping[str, SpanData]) -> str | None:
    """The process span among a connection's open spans."""
    return next((span for span, record in opened.items() if record.get("process")), None)


def ended_with(process: SpanData, tasks: list[SpanData], abnormal: str) -> list[SpanData]:
    """``tasks``, cut off by the end of ``process`` (ended already), ended as it was
    (``abnormal``: the reason of a process that ended before its span did)."""
    attrs = process["attrs"]
    why = process.get("message") or ""
    code = attrs.get(names.EXIT_CODE)
    if why.startswith("process was still running") or (
        not why and attrs.get(names.RUNNING_AT_EXIT)
    ):  # the run ended with the process and its task still running
        ran_on = "task" + (why[len("process") :] or " was still running when the traced "
                           "program exited")
        return _ended(process, tasks, ran_on)
    if why == abnormal:  # "process ended before its span did (...)": said once
        why = abnormal[abnormal.index("(") :]
    elif why.startswith("process "):
        why = why[len("process ") :]
    elif not why and attrs.get(names.TERMINATED):
        signal = _processes.signal_name(-code) if isinstance(code, int) and code < 0 else ""
        why = f"its pool stopped it ({signal or 'a signal'})"
    elif not why and attrs.get(names.EXEC):
        why = "it exec'd another program"
    return _ended(
        process, tasks, f"{DURING} {why}".rstrip() if why[:1] in ("", "(") else f"{DURING}: {why}"
    )


def _ended(process: SpanData, tasks: list[SpanData], message: str) -> list[SpanData]:
    attrs = process["attrs"]
    end = process.get("end") or 0
    for task in tasks:
        for key in _CARRIED:
            if key in attrs:
                task["attrs"][key] = attrs[key]
        task["end"] = max(end, task["start"])
        task["status"] = names.STATUS_ERROR
        task["message"] = message
        task["events"] = []
    return tasks
