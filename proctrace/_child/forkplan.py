"""What the fork children of one function started under one span share: a ``Plan``.

The start record, the two lifecycle lines and the end record of such a child differ only
by its span id, start time, name and arguments (filled in by its starter, ``forkstart``)
and by its pid and times (filled in by the child itself, ``forked``). So each is made once
per plan as a ``bytes %`` format: the JSON text written with holes in it, the holes then
turned into ``%(name)s`` (the starter's) and ``%%(name)s`` (the child's, left by the
starter's format for the child's).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .._core import arguments as _arguments
from .._core import config as _config
from .._core import ids as _ids
from .._core import names
from .._core.ids import SpanRef, parse_traceparent
from .._core.spec import TraceSpec, function_name, span_name, takes_self
from . import follow as _follow
from . import logs as _logs

# A hole in a template, as a JSON string holds it: no value a program passes is one, since
# every value is filled in through a hole itself, never written into the template.
_HOLE = "\x00\x01{}\x01\x00"
_HOLE_TEXT = "\x00\x01"
_HOLES = re.compile(rb'"\\u0000\\u0001([a-z_0-9]+)\\u0001\\u0000"')
# The holes the child fills (the rest are the starter's, per child).
_CHILD_HOLES = frozenset({"pid", "ts", "dur", "t1", "t2", "end", "cu", "cs", "vcs", "ics", "rss"})
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
KWARGS = names.KWARGS_PREFIX.replace("\\", "\\\\").replace('"', '\\"')
_dumps_compact = json.JSONEncoder(separators=(",", ":"), default=str).encode
_dumps_line = json.JSONEncoder(default=repr).encode


class Plan:
    """What the fork children of one function, started under one span, share."""

    __slots__ = (
        "end", "extra", "finished", "fn", "follow", "function", "json_lines", "key", "limit",
        "lines", "name", "parent", "path", "ppid", "record_args", "secret", "settings",
        "skip_self", "start", "started",
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
        # A fork child follows the program (follow_program) itself only if this process did
        # not with these settings, or once the API is loaded (then it has a provider to set).
        self.follow = not _follow.followed_with(settings)
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
        self.secret = _arguments.secret_positions(fn, self.extra) if spec.record_args else ()
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


def json_text(text: str) -> str:
    """``text`` as a JSON string."""
    return _str(text)


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


def lines_here(settings: _config.Settings, json_lines: bool) -> bool:
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
    lines = lines_here(settings, json_lines)
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
