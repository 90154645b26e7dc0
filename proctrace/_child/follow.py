"""What the program itself records in a traced process: its OpenTelemetry spans and its
stdlib ``logging`` records, routed through the run once it loads either."""

from __future__ import annotations

from collections.abc import Callable

from .._core import config as _config
from .._core import ids as _ids
from .._core import onimport as _onimport
from . import span as _span

# (pid, settings) follow_program() last ran for.
_followed: tuple[int, int] | None = None


def follow_program(
    settings: _config.Settings, start_run: Callable[[], object] | None = None, *, child: bool
) -> None:
    """Route what the program itself records in this traced process through the run.

    Spans it makes through the OpenTelemetry API go where proctrace's do (``otel.provide``),
    once it has imported the API; its stdlib ``logging`` records carry the trace keys and
    become span events (``stdlog``), once it has imported ``logging``. Neither is loaded
    before: a child that uses neither pays for neither. ``start_run`` (main program only)
    sets the run up should a first span end before any process started."""
    global _followed
    key = (_ids.pid(), id(settings))
    if _followed == key:
        return
    _followed = key
    _program[:] = [settings]

    def provide() -> None:
        from . import otel

        otel.provide(settings, start_run, child=child)

    _span.when_api_loaded("provider", provide)
    _onimport.when_imported("logging", _log_records)


# The settings follow_program() last ran with: an import hook registered earlier (one per
# module) reads them when it fires.
_program: list[_config.Settings] = []


def _log_records(module: object) -> None:
    from . import stdlog

    settings = _program[-1]
    stdlog.install(settings.service_name, settings.log_events, settings.max_repr)
