"""stdlib ``logging`` in traced processes: trace keys on every record, records as span events.

Every ``logging.LogRecord`` made in a traced process or task carries ``otelTraceID``,
``otelSpanID`` (32 and 16 hex digits of the current span, ``"0"`` outside any),
``otelServiceName`` (the run's service name) and ``otelTraceSampled``, the names
``opentelemetry-instrumentation-logging`` uses, so a format such as
``"%(otelTraceID)s %(otelSpanID)s %(message)s"`` works unchanged; and
``process_name`` and ``start_method``, as on proctrace's structlog events. Each
record a logger accepts also becomes an event of the current proctrace span, as
structlog events do (``logs.add_span_event``: same cap, same redaction,
``PROCTRACE_LOG_EVENTS=false`` turns it off).

Why not ``opentelemetry-instrumentation-logging`` itself: it is not a dependency;
it reads the current span from the OpenTelemetry API, which a spawn child would
have to import (tens of milliseconds) to log at all, where proctrace already knows
the current span without it; it takes the service name from the SDK provider's
resource, which a child does not have; recent versions also add an OpenTelemetry
logs handler to the root logger, and ``set_logging_format`` calls
``logging.basicConfig()``: both change the program's handlers; and it makes no
span events. So proctrace installs its own record factory with the same names,
and changes no handler and no level.

Installed only in traced processes (the main program of a traced run included), once
the program has imported ``logging``. A record factory runs before ``extra`` is
applied, so ``Logger.makeRecord`` is wrapped too: the span event gets the record's
extra attributes, and an ``extra`` that names one of the keys above wins instead of
raising ``KeyError`` as ``makeRecord`` would for a key the factory set.
"""

from __future__ import annotations

import logging
import multiprocessing
from typing import Any

from .._core import ids as _ids
from .._core import names
from .._core.ids import SpanRef
from . import logs as _logs
from . import span as _span

KEYS = (
    "otelTraceID",
    "otelSpanID",
    "otelServiceName",
    "otelTraceSampled",
    "process_name",
    "start_method",
)
_KEY_SET = frozenset(KEYS)
# A record's own attributes; any other is the program's (``extra=``).
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_OMITTED = _STANDARD | _KEY_SET

_service_name = ""
_log_events = True
_max_repr = 256
_previous_factory: Any = None
_previous_make_record: Any = None
# (process object, its name, its start method): the process keys, per process.
_process: tuple[object, str, str | None] | None = None


def install(service_name: str, log_events: bool = True, max_repr: int = 256) -> None:
    """Put the record factory and the ``makeRecord`` wrapper in place once per interpreter (a
    fork child inherits them); later calls only update the run's settings."""
    global _service_name, _log_events, _max_repr, _previous_factory, _previous_make_record
    _service_name, _log_events, _max_repr = service_name, log_events, max_repr
    if _previous_factory is not None:
        return
    _previous_factory = logging.getLogRecordFactory()
    _previous_make_record = logging.Logger.makeRecord
    logging.setLogRecordFactory(_record_factory)
    logging.Logger.makeRecord = _make_record  # type: ignore[method-assign]


def uninstall() -> None:
    """Put back what ``install()`` replaced, where nothing else has replaced it since."""
    global _previous_factory, _previous_make_record
    if _previous_factory is None:
        return
    if logging.getLogRecordFactory() is _record_factory:
        logging.setLogRecordFactory(_previous_factory)
    if logging.Logger.makeRecord is _make_record:
        logging.Logger.makeRecord = _previous_make_record  # type: ignore[method-assign]
    _previous_factory = _previous_make_record = None


def _process_keys() -> tuple[str, str | None]:
    global _process
    proc = multiprocessing.current_process()
    cached = _process
    if cached is None or cached[0] is not proc:
        carrier = getattr(proc, names.CARRIER_ATTR, None)
        method = carrier.get("start_method") if isinstance(carrier, dict) else None
        cached = _process = (proc, proc.name, method)
    return cached[1], cached[2]


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record: logging.LogRecord = _previous_factory(*args, **kwargs)
    fields = record.__dict__
    ids = _span.current_ids()
    if ids is None and _ids.main is not None:  # the main program: its own span
        main = _ids.main_span()
        ids = None if main is None else SpanRef(main.trace_id, main.span_id, main.sampled)
    if ids is None:
        fields["otelTraceID"] = fields["otelSpanID"] = "0"
        fields["otelTraceSampled"] = False
    else:
        fields["otelTraceID"], fields["otelSpanID"] = ids.trace_id, ids.span_id
        fields["otelTraceSampled"] = ids.sampled
    fields["otelServiceName"] = _service_name
    fields["process_name"], fields["start_method"] = _process_keys()
    return record


def _make_record(
    self: logging.Logger,
    name: str,
    level: int,
    fn: str,
    lno: int,
    msg: object,
    args: Any,
    exc_info: Any,
    func: str | None = None,
    extra: Any = None,
    sinfo: str | None = None,
) -> logging.LogRecord:
    own = None
    if extra:
        own = {key: extra[key] for key in KEYS if key in extra}
        if own:
            extra = {key: value for key, value in extra.items() if key not in _KEY_SET}
    record: logging.LogRecord = _previous_make_record(
        self, name, level, fn, lno, msg, args, exc_info, func, extra, sinfo
    )
    if own:
        record.__dict__.update(own)
    if _log_events and not _logs.relayed_by_structlog(self):
        try:
            _attach(record)
        except Exception:  # a span event must never break the program's logging
            pass
    return record


def _attach(record: logging.LogRecord) -> None:
    span = _span.current_span() or _ids.main_span()  # none current: the main program's
    if not isinstance(span, _span.Span) or not span.sampled:
        return
    try:
        message = record.getMessage()
    except Exception:  # logging reports the bad arguments itself, when a handler formats
        message = str(record.msg)
    items: list[tuple[str, Any]] = [
        (key, value) for key, value in record.__dict__.items() if key not in _OMITTED
    ]
    items.append(("logger", record.name))
    if record.exc_info and record.exc_info[0] is not None:
        items.append(("exception", logging.Formatter().formatException(record.exc_info)))
    _logs.add_span_event(message, _first_wins(items), record.levelname.lower(), _max_repr)


def _first_wins(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The program's own extra attributes win over the ``logger`` and ``exception`` keys."""
    seen: set[str] = set()
    kept = []
    for key, value in items:
        if key not in seen:
            seen.add(key)
            kept.append((key, value))
    return kept
