"""What the program itself records in a traced process: its OpenTelemetry spans and its
stdlib ``logging`` records, routed through the run once it loads either."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .._core import config as _config
from .._core import ids as _ids
from .._core import onimport as _onimport
from . import span as _span


def follow_program(
    settings: _config.Settings, start_run: Callable[[], object] | None = None, *, child: bool
) -> None:
    """Route what the program itself records in this traced process through the run.

    Spans it makes through the OpenTelemetry API go where proctrace's do (``otel.provide``),
    once it has imported the API; its stdlib ``logging`` records carry the trace keys and
    become span events (``stdlog``), once it has imported ``logging``. Neither is loaded
    before: a child that uses neither pays for neither. ``start_run`` (main program only)
    sets the run up should a first span end before any process started."""
    program = _program
    if program and program[0] == settings:
        if program[2] == _ids.pid():
            return  # followed in this process already
        if child:
            # A fork child of a process that followed the program with these settings: the
            # hooks it put in place are this process's too, and tell a child by its pid
            # (``_provide``); the API needs telling now only if it is loaded already.
            if "opentelemetry.trace" in sys.modules:
                program[1:] = [None, _ids.pid(), True]
                _provide()
            return
    _program[:] = [settings, start_run, _ids.pid(), child]
    _span.when_api_loaded("provider", _provide)
    _onimport.when_imported("logging", _log_records)


def followed_with(settings: _config.Settings) -> bool:
    """True when follow_program() last ran with ``settings``, here or in a parent of this
    process (a fork child whose API is not loaded has nothing more to do then)."""
    return bool(_program) and _program[0] == settings


# [settings, start_run, pid, child]: what follow_program() last ran with, in which process.
# The hooks it registered (one per module) read them when they fire; in a fork child of
# that process (another pid) they act for a child, without the main program's start_run.
_program: list[Any] = []


def _provide() -> None:
    from . import otel

    settings, start_run, pid, child = _program
    here = pid == _ids.pid()
    otel.provide(settings, start_run if here else None, child=child or not here)


def _log_records(module: object) -> None:
    from . import stdlog

    settings = _program[0]
    stdlog.install(settings.service_name, settings.log_events, settings.max_repr)
