"""A fork child's start and end, worked out by its starter before the fork.

Everything a fork child's span and lines hold is known where it is started,
except the child's pid and the times. So the starter does that work before
``fork()`` and the child only fills in what it alone knows:

- the starter opens the child's connection to the collector and sends the span's start
  record on it; the child inherits the connection and keeps it open for as long as it
  lives (its end is the collector's sign that the process ended, as for any child);
- the two lifecycle lines and the end record are left as templates (``bytes %`` formats
  with the pid and the times as holes), so a child whose target returns writes each with
  one format and one write, without the json module.

Why: after ``fork()`` every page of the starter is shared with the child, and the first
write to one (a reference count will do) copies it, in whichever process writes first.
A page fault costs about 3 µs here, as much as ten system calls, and a bare fork child
takes only ~500 of them. Every object the child touches counts, and so does every object
the starter touches while the child lives. Work done in the starter before the fork
costs least (the previous child is gone: a fault there reuses the page), and the starter
prepares what all children of one function started from one span share only once
(a ``forkplan.Plan``).
"""

from __future__ import annotations

import _socket
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from .._core import arguments as _arguments
from .._core import names
from . import forkplan as _forkplan
from . import lines as _lines
from . import logs as _logs
from . import span as _span
from . import wire as _wire

# The attributes of a fork child's "process started" event while its template holds them.
PENDING: dict[str, Any] = {}
KEY = names.FORK_PREPARED  # the carrier key of a Prepared (a fork carrier is never pickled)
# The connections prepared and not yet let go of, by the thread that prepared them: a fork
# child closes those of other threads' children, or it would hold them open (the collector
# reads a connection's end as its process's end).
_in_flight: dict[int, _socket.socket] = {}


def _after_fork_in_child() -> None:
    if not _in_flight:
        return
    mine = threading.get_ident()
    for thread, sock in list(_in_flight.items()):
        if thread != mine:
            try:
                sock.close()
            except OSError:  # pragma: no cover
                pass
    _in_flight.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Prepared:
    """What the starter prepared for one fork child (see the module's docstring)."""

    __slots__ = (
        "args", "end", "finished", "keys", "kwargs", "path", "pid_record", "plan", "sock", "span",
        "started",
    )

    def __init__(
        self,
        plan: _forkplan.Plan,
        sock: _socket.socket,
        path: str,
        span: _span.Span,
        keys: dict[str, Any],
        started: bytes | None,
        finished: bytes | None,
        end: bytes,
        args: list[str],
        kwargs: dict[str, str],
    ) -> None:
        self.plan = plan
        self.args, self.kwargs = args, kwargs  # described: for the lines of the general end
        self.sock = sock
        self.path = path
        self.span = span
        self.keys = keys  # the process keys of its structlog events
        self.started, self.finished, self.end = started, finished, end
        self.pid_record = b'{"k":"pid","span":"%s","value":%%d}\n' % span.span_id.encode()

    def forked(self, pid: int) -> None:
        """In the starter, once the child is forked: the child's pid is sent on its connection
        (the start record went before the fork, without it), and the starter's copy of that
        connection is closed (the child's copy keeps it open). This runs while the child
        shares every page with the starter: it touches as little as it can."""
        sock = self.sock
        try:  # one small write: whole, before or after the child's own end record
            sock.sendall(self.pid_record % pid)
        except OSError:
            pass
        sock.close()  # the entry in _in_flight is replaced by the next child's


def _escaped(value: bytes) -> bytes:
    return value.replace(b"%", b"%%")


def prepare(
    plan: _forkplan.Plan,
    proc: Any,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    carrier: dict[str, Any],
) -> None:
    """In the starter, before the fork: prepare the child's start (``carrier[KEY]``), from
    the plan of its function (``plan_for``), with the carrier's span id and start time.
    Left out (the child does it all itself) when the collector cannot be reached."""
    if plan.lines != _forkplan.lines_here(plan.settings, plan.json_lines):  # structlog since
        found = _forkplan.plan_for(plan.fn, plan.key[1], carrier, plan.settings)
        if found is None:
            return
        plan = found
    span_id: str = carrier["span"]
    name = str(proc.name)
    pname = _forkplan.json_text(name).encode()
    quoted_id = b'"%s"' % span_id.encode()
    start_values = {
        b"span": quoted_id, b"start": b"%d" % carrier["start"], b"pname": pname,
        b"kwargs_w": b"", b"args_w": b"[]",
    }
    child_values = {
        b"span": quoted_id, b"pname": _escaped(pname), b"args_l": b"[]", b"kwargs_l": b"{}",
    }
    shown_args: list[str] = []
    shown_kwargs: dict[str, str] = {}
    if plan.record_args and (args or kwargs):
        shown_args, shown_kwargs = _arguments.describe_as(
            plan.secret, plan.skip_self, args, kwargs, plan.limit, plan.extra
        )
        quoted = [_forkplan.json_text(text) for text in shown_args]
        start_values[b"args_w"] = ("[" + ",".join(quoted) + "]").encode()
        child_values[b"args_l"] = _escaped(("[" + ", ".join(quoted) + "]").encode())
        if shown_kwargs:
            text = _forkplan.json_text
            pairs = [(text(key), text(value)) for key, value in shown_kwargs.items()]
            start_values[b"kwargs_w"] = "".join(
                f',"{_forkplan.KWARGS}{key[1:]}:{text}' for key, text in pairs
            ).encode()
            child_values[b"kwargs_l"] = _escaped(
                ("{" + ", ".join(f"{key}: {text}" for key, text in pairs) + "}").encode()
            )
    assert plan.start is not None and plan.end is not None
    sock = _wire.open_for_child(plan.path, plan.start % start_values)
    if sock is None:
        return
    _in_flight[threading.get_ident()] = sock
    if plan.settings.log_events:
        limit = plan.limit
        text = _forkplan.json_text
        child_values[b"ev_args"] = _escaped(text(_logs.event_value(shown_args, limit)).encode())
        child_values[b"ev_kwargs"] = _escaped(
            _forkplan.json_text(_logs.event_value(shown_kwargs, limit)).encode()
        )
        child_values[b"ev_pname"] = _escaped(text(_logs.event_value(name, limit)).encode())
    _lines.minute_of(carrier["start"])  # the child's lines start in this minute, mostly
    span = _span.Span.opened(
        plan.name, plan.parent.trace_id, plan.parent.span_id, span_id, carrier["start"]
    )
    keys = {
        "process_name": name,
        "pid": None,
        "ppid": plan.ppid,
        "start_method": "fork",
        "function": plan.function,
    }
    carrier[KEY] = Prepared(
        plan,
        sock,
        plan.path,
        span,
        keys,
        plan.started % child_values if plan.started is not None else None,
        plan.finished % child_values if plan.finished is not None else None,
        plan.end % child_values,
        shown_args,
        shown_kwargs,
    )


def started(carrier: dict[str, Any], failed: str) -> None:
    """In the starter, when ``start()`` raised (``failed``: what it raised): the span, opened
    before the fork, ends ERROR: the program asked for a process and got that exception."""
    prepared = carrier.pop(KEY, None)
    if not isinstance(prepared, Prepared):
        return
    sock = prepared.sock
    try:
        end = {
            "k": "end",
            "span": carrier["span"],
            "end": time.time_ns(),
            "status": names.STATUS_ERROR,
            "message": _span.cleaned(f"start() failed: {failed}"),
            "attrs": {},
            "events": [],
        }
        sock.sendall(_wire.encode(end))
    except OSError:
        pass
    sock.close()
