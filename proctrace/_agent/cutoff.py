"""Pool tasks cut off by the end of their process: a span for each, ended as its process was.

A pool worker holds the span of the task it runs in its ring's slot (``_core.ring``); when
the worker's connection ends with a task there, the collector takes that span and ties it to
the worker's own span. When the worker's span is ended (its fate decided: killed, crashed,
``os._exit``, terminated, stopped with its process group), each task it held ends at the
same time, ERROR, with the worker's reason: a program whose worker died under a task shows
which task, with its arguments, and why.
"""

from __future__ import annotations

from .._core import names
from .._core.records import SpanData
from . import processes as _processes

DURING = "process ended during the task"
# The attributes of the process's end that say how it ended: the task's say the same.
_CARRIED = (
    names.ABNORMAL_END, names.EXIT_CODE, names.STOPPED_BY, names.TERMINATED, names.EXEC,
)


def ended_with(process: SpanData, tasks: list[SpanData], abnormal: str) -> list[SpanData]:
    """``tasks``, cut off by the end of ``process`` (ended already), ended as it was
    (``abnormal``: the reason of a process that ended before its span did)."""
    attrs = process["attrs"]
    why = process.get("message") or ""
    code = attrs.get(names.EXIT_CODE)
    if why == abnormal:  # "process ended before its span did (...)": said once
        why = abnormal[abnormal.index("(") :]
    elif why.startswith("process "):
        why = why[len("process ") :]
    elif not why and attrs.get(names.TERMINATED):
        signal = _processes.signal_name(-code) if isinstance(code, int) and code < 0 else ""
        why = f"its pool stopped it ({signal or 'a signal'})"
    elif not why and attrs.get(names.EXEC):
        why = "it exec'd another program"
    end = process.get("end") or 0
    for task in tasks:
        for key in _CARRIED:
            if key in attrs:
                task["attrs"][key] = attrs[key]
        task["end"] = max(end, task["start"])
        task["status"] = names.STATUS_ERROR
        task["message"] = f"{DURING} {why}".rstrip() if why[:1] in ("", "(") else f"{DURING}: {why}"
        task["events"] = []
    return tasks
