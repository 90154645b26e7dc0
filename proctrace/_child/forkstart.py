"""A fork child's start, done by its starter just before the fork.

Everything a fork child computes when its target starts is known where it is
started, except its pid and the times: the span's attributes, the described
arguments, the log lines. So the starter does that work once, before
``fork()``, and the child inherits the result. The starter also opens the
child's connection to the collector and sends the span's start record on it;
the child inherits that connection too, and keeps it open for as long as it
lives (its end is the collector's sign that the process ended, as for any
child). The child then only fills in what it alone knows.

This is the cost that matters under fork: every object a child touches sits
on a page of its parent's memory, and the first write to that page (a
reference count will do) copies it. Doing the work in the starter leaves the
child fewer pages to copy, and no connect and no start record to send.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._core import config as _config
from .._core import ids as _ids
from .._core import names
from .._core import redact as _args
from .._core.ids import parse_traceparent
from .._core.spec import TraceSpec, function_name, span_name
from . import logs as _logs
from . import span as _span
from . import wire as _wire

KEY = "fork"  # the carrier key of a Prepared (fork only: a fork carrier is never pickled)
_MARK = "\x00{}\x00"
# The gaps, as json.dumps writes a mark; only these names (a process named "\x00x\x00" is
# just a name).
_MARKS = re.compile(r'"\\u0000(pid|duration_ms|exit_code|timestamp)\\u0000"')
# The connections prepared and not yet let go of, by the thread that prepared them: a fork
# child closes those of other threads' children, or it would hold them open (the collector
# reads a connection's end as its process's end).
_in_flight: dict[int, socket.socket] = {}


def _after_fork_in_child() -> None:
    mine = threading.get_ident()
    for thread, sock in list(_in_flight.items()):
        if thread != mine:
            try:
                sock.close()
            except OSError:  # pragma: no cover
                pass
    _in_flight.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Line:
    """A lifecycle log line rendered up to the values only the child knows (its pid, the
    duration, the exit code, the timestamp), and the span event it makes."""

    __slots__ = ("event", "parts", "span_attrs")

    def __init__(
        self,
        level: str,
        event: str,
        keys: dict[str, Any],
        process_keys: dict[str, Any],
        ids: tuple[str, str],
        settings: _config.Settings,
    ) -> None:
        self.event = event
        items = [*keys.items(), *process_keys.items()]
        self.span_attrs = (
            _logs.event_attributes(items, level, settings.max_repr)
            if settings.log_events
            else None
        )
        self.parts: list[str] | None = None
        if not settings.quiet:
            # The dict _render() would build, in its order, with marks for the gaps.
            event_dict = {**keys, "event": event, **process_keys}
            event_dict["trace_id"], event_dict["span_id"] = ids
            event_dict["level"] = level
            event_dict["timestamp"] = _MARK.format("timestamp")
            self.parts = _MARKS.split(json.dumps(event_dict, default=repr))

    def emit(self, span: _span.Span, values: Mapping[str, int | float]) -> None:
        """Add the span event and write the line, the gaps filled from ``values``."""
        if self.span_attrs is not None and span.sampled:
            if len(span.events) < _logs.MAX_SPAN_EVENTS:
                attrs = dict(self.span_attrs)
                attrs.update(values)
                span.events.append((self.event, time.time_ns(), attrs))
            else:
                dropped = span.attributes.get(names.DROPPED_LOG_EVENTS, 0)
                span.attributes[names.DROPPED_LOG_EVENTS] = dropped + 1
        parts = self.parts
        if parts is None:
            return
        out = [parts[0]]
        for i in range(1, len(parts), 2):
            name = parts[i]
            if name == "timestamp":
                out.append(f'"{_logs.timestamp()}"')
            else:
                value = values[name]
                out.append(repr(value) if type(value) is float else str(value))
            out.append(parts[i + 1])
        _logs.LineWriter().msg("".join(out))


class Prepared:
    """What the starter prepared for one fork child (see the module's docstring)."""

    __slots__ = ("args", "attributes", "finished", "kwargs", "sock", "started")

    def __init__(
        self,
        sock: socket.socket,
        attributes: dict[str, Any],
        args: list[str],
        kwargs: dict[str, str],
        started: Line | None,
        finished: Line | None,
    ) -> None:
        self.sock = sock
        self.attributes = attributes
        self.args, self.kwargs = args, kwargs
        self.started = started
        self.finished = finished

    def described(self) -> tuple[dict[str, Any], list[str], dict[str, str]]:
        """In the child: the span's attributes (its pid added) and the described arguments."""
        self.attributes[names.PID] = _ids.pid()
        return self.attributes, self.args, self.kwargs


def prepare(
    proc: Any,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    spec: TraceSpec,
    carrier: dict[str, Any],
    settings: _config.Settings,
) -> None:
    """In the starter, before the fork: prepare the child's start (``carrier[KEY]``). Left
    out (the child does it all itself) when the span is not sampled or the collector is
    gone."""
    parent = parse_traceparent(carrier["traceparent"])
    if settings.disabled or parent is None or not parent.sampled:
        return
    function = function_name(fn)
    shown_args: list[str] = []
    shown_kwargs: dict[str, str] = {}
    attributes: dict[str, Any] = {
        names.PARENT_PID: _ids.pid(),
        names.PROCESS_NAME: proc.name,
        names.START_METHOD: "fork",
        names.STARTER_PID: carrier["starter_pid"],
        names.FUNCTION: function,
    }
    if spec.record_args:
        shown_args, shown_kwargs = _args.describe(
            fn, args, kwargs, limit=settings.max_repr, extra=spec.redact + settings.redact
        )
        attributes[names.ARGS] = shown_args
        for key, value in shown_kwargs.items():
            attributes[names.KWARGS_PREFIX + key] = value
    sock = _wire.open_for_child(
        carrier["socket"],
        {
            "k": "start",
            "trace": parent.trace_id,
            "span": carrier["span"],
            "parent": parent.span_id,
            "name": span_name(fn, spec),
            "start": carrier["start"],
            "attrs": attributes,
            "p": True,
            "q": bool(carrier["quiet_term"]),
        },
    )
    if sock is None:
        return
    _in_flight[threading.get_ident()] = sock
    started = finished = None
    if _logs.rendered_here(settings.log_format) and _logs.uses_json(settings.log_format):
        process_keys = {
            "process_name": proc.name,
            "pid": _MARK.format("pid"),
            "ppid": attributes[names.PARENT_PID],
            "start_method": "fork",
            "function": function,
        }
        ids = (parent.trace_id, carrier["span"])
        started = Line(
            "info",
            "process started",
            {"args": shown_args, "kwargs": shown_kwargs},
            process_keys,
            ids,
            settings,
        )
        finished = Line(
            "info",
            "process finished",
            {"duration_ms": _MARK.format("duration_ms"), "exit_code": _MARK.format("exit_code")},
            process_keys,
            ids,
            settings,
        )
    carrier[KEY] = Prepared(sock, attributes, shown_args, shown_kwargs, started, finished)


def started(carrier: dict[str, Any], pid: int | None, failed: str | None = None) -> None:
    """In the starter, after ``start()``: the child's ``pid`` is sent on its connection (the
    start record went before the fork, without it), and the starter's copy of that
    connection is closed (the child's copy keeps it open). If ``start()`` raised
    (``failed``: what it raised), the span ends ERROR instead: the program asked for a
    process and got that exception."""
    prepared = carrier.pop(KEY, None)
    if not isinstance(prepared, Prepared):
        return
    if _in_flight.get(threading.get_ident()) is prepared.sock:
        del _in_flight[threading.get_ident()]
    if failed:
        try:
            end = {
                "k": "end",
                "span": carrier["span"],
                "end": time.time_ns(),
                "status": names.STATUS_ERROR,
                "message": f"start() failed: {failed}",
                "attrs": {},
                "events": [],
            }
            prepared.sock.sendall(_wire.encode(end))
        except OSError:
            pass
    elif pid is not None:
        try:  # one small write: whole, before or after the child's own end record
            prepared.sock.sendall(
                b'{"k":"pid","span":"%s","value":%d}\n' % (carrier["span"].encode(), pid)
            )
        except OSError:
            pass
    os.close(prepared.sock.detach())  # the child's copy keeps the connection open


def take(carrier: dict[str, Any]) -> Prepared | None:
    """In the fork child: what its starter prepared for it, its connection now this
    process's own; None if nothing was prepared."""
    prepared = carrier.pop(KEY, None)
    if not isinstance(prepared, Prepared):
        return None
    _wire.adopt(carrier["socket"], prepared.sock)
    return prepared
