"""A fork child's own run, its start prepared by its starter (``forkstart``): the short way.

The child fills in its pid and the times, and writes each line and the end record with one
``bytes %`` format. Every object it touches costs it a page copy (about 3 µs here: a bare
fork child takes ~370 of them in all), and so does every function it runs: hence one
function, few calls, the templates made before the fork. A target that fails, exits, or
logs span events of its own ends the general way (``_ended``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._core import ids as _ids
from .._core import names
from . import forkstart as _forkstart
from . import lines as _lines
from . import logs as _logs
from . import outcome as _outcome
from . import span as _span
from . import usage as _usage
from . import wire as _wire
from .follow import follow_program

_modules = sys.modules


def run(
    proc: Any,
    prepared: _forkstart.Prepared,
    target: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> Any:
    """``run_process()`` in a fork child whose start its starter prepared."""
    pid = _ids.pid()
    proc.__dict__[names.ENTERED_ATTR] = pid  # whose span is open (an exec reports it)
    _wire.adopt(prepared.path, prepared.sock)
    span = prepared.span
    plan = prepared.plan
    settings = plan.settings
    keys = prepared.keys
    keys["pid"] = pid
    _logs.forked(keys, plan.json_lines)
    if plan.follow or "opentelemetry.trace" in _modules:
        follow_program(settings, child=True)
    state = _span.enter(span)
    started = time.perf_counter()
    t1 = time.time_ns()
    pid_text = b"%d" % pid
    if prepared.started is not None:
        _lines.write_line(prepared.started % {b"pid": pid_text, b"ts": _lines.timestamp_of(t1)})
    elif not settings.quiet:
        _logs.emit("info", "process started", args=prepared.args, kwargs=prepared.kwargs)
        t1 = 0  # the event is a span event of its own already
    if t1 and settings.log_events:
        span.events.append(("process started", t1, _forkstart.PENDING))  # in the template
    try:
        result = target(*args, **kwargs)
    except BaseException as exc:
        if _ids.pid() == pid:  # else a copy os.fork() made in the target: see below
            _forked_failed(prepared, started, exc)
        _span.leave(span, state)
        raise
    if _ids.pid() != pid:  # a copy of this child made by os.fork() in the target (not by
        # multiprocessing): this span, its lines and its end record are not the copy's
        _span.leave(span, state)
        return result
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    t2 = time.time_ns()
    finished = prepared.finished
    if (
        len(span.events) == (1 if t1 and settings.log_events else 0)
        and not span.attributes  # nothing of the program's own: the templates say it all
        and (
            settings.quiet
            or (
                finished is not None
                and ("structlog" not in _modules or _logs.rendered_here(settings.log_format))
            )
        )
    ):
        dur = repr(duration_ms).encode()
        if finished is not None:
            _lines.write_line(
                finished % {b"pid": pid_text, b"ts": _lines.timestamp_of(t2), b"dur": dur}
            )
        use = _usage.forked_use()
        if use is not None:
            use[b"pid"], use[b"dur"] = pid_text, dur
            use[b"t1"], use[b"t2"], use[b"end"] = b"%d" % t1, b"%d" % t2, b"%d" % time.time_ns()
            _wire.send_line(prepared.end % use)
        else:
            _ended(prepared, duration_ms, _span.STATUS_UNSET, "", 0, t2, written=True)
    else:
        _ended(prepared, duration_ms, _span.STATUS_UNSET, "", 0, t2)
    _span.leave(span, state)
    return result


def _forked_failed(prepared: _forkstart.Prepared, started: float, exc: BaseException) -> None:
    """A prepared fork child's target raised (SystemExit included): the general end."""
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    if isinstance(exc, SystemExit):
        exit_code = _outcome.exit_code(exc, "fork")
        status, message = _outcome.exited_status(exc, exit_code)
        _ended(prepared, duration_ms, status, message, exit_code, time.time_ns())
        return
    status, message = _outcome.failed_status(prepared.span, exc)
    _ended(prepared, duration_ms, status, message, 1, time.time_ns(), failure=exc)


def _ended(
    prepared: _forkstart.Prepared,
    duration_ms: float,
    status: int,
    message: str,
    exit_code: int,
    now: int,
    *,
    failure: BaseException | None = None,
    written: bool = False,
) -> None:
    """End a prepared fork child's span the general way: its ``process started`` event made
    whole, the last line written (unless ``written``), the end record encoded."""
    span = prepared.span
    settings = prepared.plan.settings
    events = span.events
    if events and events[0][2] is _forkstart.PENDING:  # the started event the template held
        attrs = _logs.event_attributes(
            [("args", prepared.args), ("kwargs", prepared.kwargs), *prepared.keys.items()],
            "info",
            settings.max_repr,
        )
        events[0] = (events[0][0], events[0][1], attrs)
    if written:
        if settings.log_events:
            attrs = _logs.event_attributes(
                [("duration_ms", duration_ms), ("exit_code", exit_code), *prepared.keys.items()],
                "info",
                settings.max_repr,
            )
            events.append(("process finished", now, attrs))
    else:
        _outcome.log_end(duration_ms, exit_code, failure)
    use = _usage.process_use("fork")
    use[names.PID] = prepared.keys["pid"]  # its start record, sent before the fork, had no pid
    span.end(status, message, {names.EXIT_CODE: exit_code, **use})
