"""The main process's span: where it joins a trace handed in, whether it is sampled, and how
the program ended.

A run started with ``TRACEPARENT`` (and ``TRACESTATE``) in its environment (the
OpenTelemetry specification's environment carrier, set by a CI system, a
scheduler or another traced program) continues that trace: the main span's
parent is the span named there. The run's sampler (or the application
provider's) decides once, here, for the whole trace. At exit the span says how
the program ended: an uncaught exception (ERROR with an ``exception`` event),
``sys.exit(n)`` whose exit status (``n & 0xFF``) is not 0, or Ctrl-C.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Any

from .._child import outcome as _outcome
from .._child import span as _span
from .._child import usage as _usage
from .._core import config as _config
from .._core import names, sampling
from .._core.ids import SpanRef, new_id, parse_traceparent

INTERRUPTED = "interrupted (KeyboardInterrupt)"


def handed_in() -> tuple[SpanRef | None, str]:
    """The span ``TRACEPARENT`` names (None when unset or malformed), and ``TRACESTATE``."""
    raw = os.environ.get("TRACEPARENT", "")
    parent = parse_traceparent(raw) if raw else None
    return parent, os.environ.get("TRACESTATE", "") if parent is not None else ""


def open_span(settings: _config.Settings, pid: int, app_provider: Any) -> _span.Span:
    """The main process's span, under the span handed in if any, sampled as the run says."""
    parent, _ = handed_in()
    trace_id = parent.trace_id if parent is not None else new_id(16)
    name = _config.default_service_name()
    if app_provider is not None and getattr(app_provider, "sampler", None) is not None:
        from .._otel.samplers import decide_root

        sampled = decide_root(app_provider.sampler, trace_id, name, parent)
    else:
        sampled = sampling.decide(
            settings.sampler,
            settings.sampler_ratio,
            trace_id,
            parent.sampled if parent is not None else None,
        )
    return _span.Span(
        name,
        trace_id,
        parent.span_id if parent is not None else None,
        {names.PID: pid, names.PROCESS_NAME: "MainProcess"},
        sampled=sampled,
    )


class Outcome:
    """How the program is ending, seen through ``sys.excepthook`` and ``sys.exit``.

    Both are wrapped only while a run is under way in the main process and handed
    back unchanged at its end; the program's own hooks still run, first to last.
    ``raise SystemExit(n)`` outside ``sys.exit`` is seen by ``proctrace run`` only.
    """

    def __init__(self) -> None:
        self.status = names.STATUS_UNSET
        self.message = ""
        self.code: int | None = None
        self.exception: BaseException | None = None
        self._hook: Any = None
        self._exit: Any = None

    def watch(self) -> None:
        self._hook, self._exit = sys.excepthook, sys.exit
        outcome = self

        def excepthook(
            kind: type[BaseException], value: BaseException, tb: TracebackType | None
        ) -> None:
            outcome.failed(value)
            outcome._hook(kind, value, tb)

        def exit(code: object = None) -> None:
            outcome.exited(code)
            outcome._exit(code)

        sys.excepthook = excepthook
        sys.exit = exit  # type: ignore[assignment]

    def unwatch(self) -> None:
        if self._hook is not None and getattr(sys.excepthook, "__name__", "") == "excepthook":
            sys.excepthook = self._hook
        if self._exit is not None and getattr(sys.exit, "__qualname__", "").endswith(
            "watch.<locals>.exit"
        ):
            sys.exit = self._exit

    def failed(self, exc: BaseException) -> None:
        """An exception is ending the program (uncaught), or ended ``proctrace run``'s."""
        if self.exception is not None or self.code not in (None, 0):
            return
        if isinstance(exc, SystemExit):
            self.exited(exc.code)
            return
        self.exception = exc
        if isinstance(exc, KeyboardInterrupt):
            self.status, self.message = names.STATUS_ERROR, INTERRUPTED
            return
        self.status, self.code = names.STATUS_ERROR, 1
        self.message = _outcome.failure_message(exc)

    def exited(self, code: object) -> None:
        """``sys.exit(code)``: the status the program exits with, as the OS reports it
        (``sys.exit(256)`` is 0, ``sys.exit(-1)`` 255)."""
        if self.exception is not None:
            return
        self.code = _outcome.exit_status(code)
        if self.code != 0:
            self.status, self.message = names.STATUS_ERROR, _span.cleaned(f"sys.exit({code!r})")
        else:
            self.status, self.message = names.STATUS_UNSET, ""

    def end(self, span: _span.Span) -> None:
        """End the main span with what was seen."""
        if self.exception is not None and not isinstance(self.exception, KeyboardInterrupt):
            span.record_exception(self.exception)
        attributes = {names.EXIT_CODE: self.code} if self.code is not None else {}
        if span.sampled:
            _usage.prepare()
            attributes.update(_usage.process_use(None))  # the main program was exec'd
        span.end(self.status, self.message, attributes)
