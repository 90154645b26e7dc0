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
(a ``Plan``).
"""

from __future__ import annotations

import _socket
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._core import config as _config
from .._core import ids as _ids
from .._core import names
from .._core import redact as _args
from .._core.ids import SpanRef, parse_traceparent
from .._core.spec import TraceSpec, function_name, span_name, takes_self
from . import logs as _logs
from . import span as _span
from . import wire as _wire

# The attributes of a fork child's "process started" event while its template holds them.
PENDING: dict[str, Any] = {}
KEY = "fork"  # the carrier key of a Prepared (fork only: a fork carrier is never pickled)
# A hole in a template, as a JSON string holds it: no value a program passes is one, since
# every value is filled in through a hole itself, never written into the template.
_HOLE = "\x00\x01{}\x01\x00"
_HOLE_TEXT = "\x00\x01"
_HOLES = re.compile(rb'"\\u0000\\u0001([a-z_0-9]+)\\u0001\\u0000"')
# The holes the child fills (the rest are the starter's, per child).
_CHILD_HOLES = frozenset({"pid", "ts", "dur", "t1", "t2", "end", "cu", "cs", "vcs", "ics", "rss"})
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


def _hole(name: str) -> str:
    return _HOLE.format(name)


def template(text: str, expected: frozenset[str]) -> bytes | None:
    """JSON ``text`` with holes as a ``bytes %`` format in two steps: the starter's holes
    become ``%(name)s`` and the child's ``%%(name)s`` (so the starter's format leaves them for
    the child's); None if the holes found are not ``expected``."""
    data = text.encode("ascii").replace(b"%", b"%%%%")
    found: list[str] = []

    def fill(match: re.Match[bytes]) -> bytes:
        name = match.group(1)
        found.append(name.decode())
        return (b"%%(" if name.decode() in _CHILD_HOLES else b"%(") + name + b")s"

    result = _HOLES.sub(fill, data)
    return result if set(found) == expected else None


def one_step(text: str, expected: frozenset[str]) -> bytes | None:
    """``template()`` for a format the starter alone fills."""
    data = text.encode("ascii").replace(b"%", b"%%")
    found: list[str] = []

    def fill(match: re.Match[bytes]) -> bytes:
        found.append(match.group(1).decode())
        return b"%(" + match.group(1) + b")s"

    result = _HOLES.sub(fill, data)
    return result if set(found) == expected else None


# A string as JSON holds it (what json.dumps writes for one, without the encoder's machinery).
_str = json.encoder.encode_basestring_ascii
_PREFIX = names.KWARGS_PREFIX.replace("\\", "\\\\").replace('"', '\\"')
_dumps_compact = json.JSONEncoder(separators=(",", ":"), default=str).encode
_dumps_line = json.JSONEncoder(default=repr).encode


class Plan:
    """What the fork children of one function, started under one span, share."""

    __slots__ = (
        "end", "extra", "finished", "fn", "function", "json_lines", "key", "limit", "lines",
        "name", "parent", "path", "ppid", "record_args", "secret", "settings", "skip_self", "start",
        "started",
    )

    def __init__(
        self,
        key: tuple[Any, ...],
        fn: Callable[..., Any],
        spec: TraceSpec,
        parent: SpanRef,
        settings: _config.Settings,
        starter_pid: int,
        quiet_term: bool,
        lines: bool,
        json_lines: bool,
    ) -> None:
        self.key = key
        self.path = ""  # the collector's socket, set by plan_for()
        self.json_lines = json_lines
        self.lines = lines
        self.fn = fn
        self.parent = parent
        self.settings = settings
        self.function = function_name(fn)
        self.name = span_name(fn, spec)
        self.record_args = spec.record_args
        self.limit = settings.max_repr
        self.extra = spec.redact + settings.redact
        self.secret = _args.secret_positions(fn, self.extra) if spec.record_args else ()
        self.skip_self = takes_self(fn) if spec.record_args else False
        ppid = self.ppid = _ids.pid()
        attrs: dict[str, Any] = {
            names.PARENT_PID: ppid,
            names.PROCESS_NAME: _hole("pname"),
            names.START_METHOD: "fork",
            names.STARTER_PID: starter_pid,
            names.FUNCTION: self.function,
        }
        holes = {"span", "start", "pname"}
        if spec.record_args:
            attrs[names.ARGS] = _hole("args_w")
            holes.add("args_w")
        start = {
            "k": "start",
            "trace": parent.trace_id,
            "span": _hole("span"),
            "parent": parent.span_id,
            "name": self.name,
            "start": _hole("start"),
            "p": True,
            "q": quiet_term,
            "attrs": attrs,  # last: the keyword arguments' attributes are added at its end
        }
        start_format = one_step(_dumps_compact(start)[:-2], frozenset(holes))
        self.start = None if start_format is None else start_format + b"%(kwargs_w)s}}\n"
        process_keys = {
            "process_name": _hole("pname"),
            "pid": _hole("pid"),
            "ppid": ppid,
            "start_method": "fork",
            "function": self.function,
        }
        ids = (parent.trace_id, _hole("span"))
        self.started = self.finished = None
        if lines:
            self.started = _line(
                "process started",
                {"args": _hole("args_l"), "kwargs": _hole("kwargs_l")},
                process_keys,
                ids,
                frozenset({"args_l", "kwargs_l", "pname", "pid", "span", "ts"}),
            )
            self.finished = _line(
                "process finished",
                {"duration_ms": _hole("dur"), "exit_code": 0},
                process_keys,
                ids,
                frozenset({"pname", "pid", "span", "ts", "dur"}),
            )
        # The end record of a child whose target returned, with its two lifecycle events.
        events: list[Any] = []
        end_holes = {"span", "end", "cu", "cs", "vcs", "ics", "rss", "pid"}
        if settings.log_events:
            started_attrs = _logs.event_attributes(
                [("args", _hole("ev_args")), ("kwargs", _hole("ev_kwargs")),
                 *process_keys.items()],
                "info",
                self.limit,
            )
            started_attrs["process_name"] = _hole("ev_pname")
            finished_attrs = _logs.event_attributes(
                [("duration_ms", _hole("dur")), ("exit_code", 0), *process_keys.items()],
                "info",
                self.limit,
            )
            finished_attrs["process_name"] = _hole("ev_pname")
            events = [
                ["process started", _hole("t1"), started_attrs],
                ["process finished", _hole("t2"), finished_attrs],
            ]
            end_holes |= {"ev_args", "ev_kwargs", "ev_pname", "t1", "t2", "dur"}
        end = {
            "k": "end",
            "span": _hole("span"),
            "end": _hole("end"),
            "status": names.STATUS_UNSET,
            "message": "",
            "attrs": {
                names.EXIT_CODE: 0,
                names.CPU_USER: _hole("cu"),
                names.CPU_SYSTEM: _hole("cs"),
                names.SWITCHES_VOLUNTARY: _hole("vcs"),
                names.SWITCHES_INVOLUNTARY: _hole("ics"),
                names.MEMORY_PEAK: _hole("rss"),
                names.PID: _hole("pid"),
            },
            "events": events,
        }
        self.end = template(_dumps_compact(end) + "\n", frozenset(end_holes))


def _json(text: str) -> str:
    return _dumps_compact(text)


def _line(
    event: str,
    keys: dict[str, Any],
    process_keys: dict[str, Any],
    ids: tuple[str, str],
    holes: frozenset[str],
) -> bytes | None:
    """A lifecycle line as ``logs._render`` writes it (its keys in that order), with holes."""
    event_dict = {**keys, "event": event, **process_keys}
    event_dict["trace_id"], event_dict["span_id"] = ids
    event_dict["level"] = "info"
    event_dict["timestamp"] = _hole("ts")
    return template(_dumps_line(event_dict) + "\n", holes)


_plans: dict[tuple[Any, ...], Plan] = {}
_MAX_PLANS = 64


def _lines(settings: _config.Settings, json_lines: bool) -> bool:
    """True when proctrace writes the lifecycle lines itself, as JSON."""
    return not settings.quiet and json_lines and _logs.rendered_here(settings.log_format)


def plan_for(
    fn: Callable[..., Any],
    spec: TraceSpec,
    carrier: dict[str, Any],
    settings: _config.Settings,
) -> Plan | None:
    """The plan of fork children of ``fn`` started with a carrier like ``carrier`` here
    (made on first use); None when such a child is better left to start itself."""
    if settings.disabled:
        return None
    json_lines = _logs.uses_json(settings.log_format)
    lines = _lines(settings, json_lines)
    key = (
        fn, spec, carrier["traceparent"], id(settings), carrier["starter_pid"],
        bool(carrier["quiet_term"]), lines, _ids.pid(),
    )
    try:
        plan = _plans.get(key)
    except TypeError:  # an unhashable callable
        return None
    if plan is None or plan.settings is not settings:
        if _HOLE_TEXT in function_name(fn) + span_name(fn, spec):
            return None  # a name a hole could be mistaken in: the child does it all itself
        parent = parse_traceparent(carrier["traceparent"])
        if parent is None or not parent.sampled:
            return None
        plan = Plan(
            key, fn, spec, parent, settings, carrier["starter_pid"],
            bool(carrier["quiet_term"]), lines, json_lines,
        )
        if plan.start is None or plan.end is None:
            return None
        plan.path = carrier["socket"]
        if len(_plans) >= _MAX_PLANS:
            _plans.clear()
        _plans[key] = plan
    return plan


class Prepared:
    """What the starter prepared for one fork child (see the module's docstring)."""

    __slots__ = (
        "args", "end", "finished", "keys", "kwargs", "path", "pid_record", "plan", "sock", "span",
        "started",
    )

    def __init__(
        self,
        plan: Plan,
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
    plan: Plan,
    proc: Any,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    carrier: dict[str, Any],
) -> None:
    """In the starter, before the fork: prepare the child's start (``carrier[KEY]``), from
    the plan of its function (``plan_for``), with the carrier's span id and start time.
    Left out (the child does it all itself) when the collector cannot be reached."""
    if plan.lines != _lines(plan.settings, plan.json_lines):  # structlog configured since
        found = plan_for(plan.fn, plan.key[1], carrier, plan.settings)
        if found is None:
            return
        plan = found
    span_id: str = carrier["span"]
    name = str(proc.name)
    pname = _str(name).encode()
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
        shown_args, shown_kwargs = _args.describe_as(
            plan.secret, plan.skip_self, args, kwargs, plan.limit, plan.extra
        )
        quoted = [_str(text) for text in shown_args]
        start_values[b"args_w"] = ("[" + ",".join(quoted) + "]").encode()
        child_values[b"args_l"] = _escaped(("[" + ", ".join(quoted) + "]").encode())
        if shown_kwargs:
            pairs = [(_str(key), _str(text)) for key, text in shown_kwargs.items()]
            start_values[b"kwargs_w"] = "".join(
                f',"{_PREFIX}{key[1:]}:{text}' for key, text in pairs
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
        child_values[b"ev_args"] = _escaped(_str(_logs.event_value(shown_args, limit)).encode())
        child_values[b"ev_kwargs"] = _escaped(
            _str(_logs.event_value(shown_kwargs, limit)).encode()
        )
        child_values[b"ev_pname"] = _escaped(_str(_logs.event_value(name, limit)).encode())
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
            "message": f"start() failed: {failed}",
            "attrs": {},
            "events": [],
        }
        sock.sendall(_wire.encode(end))
    except OSError:
        pass
    sock.close()


def take(carrier: dict[str, Any]) -> Prepared | None:
    """In the fork child: what its starter prepared for it, its connection now this
    process's own; None if nothing was prepared."""
    prepared = carrier.pop(KEY, None)
    if not isinstance(prepared, Prepared):
        return None
    _wire.adopt(prepared.path, prepared.sock)
    return prepared
