"""Announced task spans (a Dask task's): a start record when the call begins, so that the
collector ends the span (ERROR) should the process die mid-call, and at its end the span
itself, written as the OTLP message it is exported as.

A worker runs the same function for many tasks submitted from one span, so what their
spans share (the trace, the parent, the name, the process's, worker's and thread's
attributes) is encoded once (a ``Plan``): as JSON for the start record, as protobuf for
the span. Each call then costs its span id, its times, its arguments described, its own
attributes (the task's key, its attempt) and two records into the process's ring. The
collector drops the start once the span that ends it arrives. A call that failed, logged
span events, or whose span got attributes while it ran, ends the general way
(``Span.end``, an ``end`` record the collector joins to the start): those are rare.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._core import arguments as _arguments
from .._core import ids as _ids
from .._core import names
from .._core.ids import SpanRef
from .._core.spec import takes_self
from .._otlp import protobuf as _protobuf
from . import outcome as _outcome
from . import span as _span
from . import wire as _wire


class Plan:
    """What every call of one function submitted from one span shares, in one thread of
    this process; ``attrs`` are all the span's attributes but the arguments, the CPU time
    and each call's ``own`` (their keys here, their values given to ``run()``)."""

    __slots__ = (
        "address", "encoder", "extra", "head", "limit", "name", "own", "own_keys", "parent",
        "pid", "record_args", "secret", "secret_any", "skip_self",
    )

    def __init__(
        self,
        target: Callable[..., Any],
        name: str,
        parent: SpanRef,
        attrs: Mapping[str, Any],
        own: tuple[str, ...],
        record_args: bool,
        limit: int,
        extra: tuple[str, ...],
    ) -> None:
        self.name, self.parent = name, parent  # not the function: a copy of it may come
        self.address = _wire.address()
        self.pid = _pid[0]  # a copy os.fork() makes of this process ends none of its spans
        self.encoder = _protobuf.TaskSpans(parent.trace_id, parent.span_id, name, attrs)
        self.own = _protobuf.OwnAttributes(own)
        # The start record up to its span id: a StartRecord (records.py), "t" for a task;
        # the attributes then go on with each call's own, the first of them after a comma.
        shared = _ENCODER.encode(dict(attrs))[1:-1]
        self.head = (
            f'{{"k":"start","t":true,"trace":"{parent.trace_id}","parent":"{parent.span_id}",'
            f'"name":{_escaped(name)},"attrs":{{{shared}{"," if shared else ""}'
        )
        self.own_keys = tuple(_escaped(key) + ":" for key in own)
        self.record_args, self.limit, self.extra = record_args, limit, extra
        self.secret = _arguments.secret_positions(target, extra)
        self.secret_any = any(self.secret)
        self.skip_self = takes_self(target)

    def holds(self) -> bool:
        """Still this process's way to its collector (a plan made before it moved, or in the
        process os.fork() copied this one from, is not)."""
        return _wire.address() == self.address and self.pid == _pid[0]


def run(
    plan: Plan,
    target: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    span_id: str,
    own: tuple[str | int, ...],
) -> Any:
    """One call of ``target`` (the plan's function, or a copy of it) in its span ``span_id``;
    ``own``: the values of the call's own attributes (strings and ints, at least one). Its
    records are written from templates: this runs for every task, in a thread that ran
    other code in between, where each step costs several times what it does in a loop."""
    shown_args, shown_kwargs = _describe(plan, args, kwargs)
    text = ",".join(
        [
            k + (_escaped(v) if type(v) is str else str(int(v)))
            for k, v in zip(plan.own_keys, own, strict=True)
        ]
    )
    if shown_args is not None:
        text += _ARGS + ",".join(map(_escaped, shown_args)) + "]"
    for key, value in shown_kwargs.items():
        text += "," + _escaped(_KWARGS + key) + ":" + _escaped(value)
    start = _time_ns()
    span = _Span.announced_task(plan.name, plan.parent, span_id, start)
    span.ring = _send_start(f'{plan.head}{text}}},"span":"{span_id}","start":{start}}}'.encode())
    cpu0 = _thread_time()  # this thread's: other threads' work is not the call's
    state = _enter(span)
    try:
        result = target(*args, **kwargs)
    except BaseException as exc:
        _leave(span, state)
        if _pid[0] == plan.pid:  # else a copy made by os.fork() in the task: not its span
            cpu = (_thread_time() - cpu0) // 1000 / 1e6
            status, message = _outcome.failed_status(span, exc)
            span.end(status, message, {**span.attributes, names.TASK_CPU: cpu})
        raise
    _leave(span, state)
    if _pid[0] != plan.pid:  # a copy made by os.fork() in the task: not its span
        return result
    cpu = (_thread_time() - cpu0) // 1000 / 1e6
    if span.events or span.attributes:  # log events, attributes set while it ran
        span.end(_span.STATUS_UNSET, "", {**span.attributes, names.TASK_CPU: cpu})
        return result
    _send_end(
        plan.encoder.encode(
            span_id, start, _time_ns(), shown_args, shown_kwargs, cpu, plan.own.encode(own)
        ),
        span.ring,
    )
    return result


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # ASCII only, as every record
_escaped = json.encoder.encode_basestring_ascii  # a JSON string: quoted, ASCII only
_ARGS = "," + _escaped(names.ARGS) + ":["
_KWARGS = names.KWARGS_PREFIX
_Span = _span.Span
_send_start, _send_end = _wire.send_task_line, _wire.send_encoded
_enter, _leave = _span.enter, _span.leave
# CPU time in whole µs, from ns: round(seconds, 6) costs ~0.4 µs a task (as text, then back)
_thread_time, _time_ns = time.thread_time_ns, time.time_ns
_describe = _arguments.describe_planned
_pid = _ids._pid  # what ids.pid() reads, read here without the call
