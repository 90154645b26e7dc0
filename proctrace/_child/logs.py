"""structlog in traced children: process and trace keys on every event, one whole line per event.

proctrace configures structlog only in the processes it traces. When the
application configured structlog itself, its chain is kept and proctrace's
processor is put in front of it, so its events carry the same keys.

Importing structlog costs a spawn child about 45 ms (it imports asyncio). So
where structlog is not loaded yet and the output is JSON, proctrace writes its
own events with a renderer that produces exactly the lines structlog's chain
would, and configures structlog the moment the program imports it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, MutableMapping
from contextvars import ContextVar
from typing import Any

from .._core import arguments as _arguments
from .._core import ids as _ids
from .._core import onimport as _onimport
from .._core import redact as _args
from .._core.names import DROPPED_LOG_EVENTS
from . import lines as _lines
from . import span as _span
from .lines import LineWriter, LineWriterFactory

# Keys of the process this is, set once when its traced target starts.
_process_keys: dict[str, Any] = {}
_configured_pid: int | None = None


def set_process_keys(**keys: Any) -> None:
    _process_keys.clear()
    _process_keys.update(keys)


def add_process_context(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add process keys and the current ``trace_id``/``span_id``."""
    for key, value in _process_keys.items():
        event_dict.setdefault(key, value)
    ids = _span.current_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


MAX_SPAN_EVENTS = 128
_log_events = True
_max_repr = 256
_SKIP = ("event", "trace_id", "span_id")


def attach_to_span(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the event also becomes an event of the current span, so a
    backend shows the logs under the span that wrote them."""
    if _log_events:
        items = ((k, v) for k, v in event_dict.items() if k not in _SKIP)
        add_span_event(str(event_dict.get("event", "")), items, method_name)
        _relaying(logger, method_name)
    return event_dict


def add_span_event(
    name: str, items: Iterable[tuple[Any, Any]], level: str, max_repr: int | None = None
) -> None:
    """An event of the current proctrace span (structlog events, stdlib records): its name and
    string values cleaned of secrets, secret-looking keys redacted, other values than str,
    int, float and bool as reprs, at most ``MAX_SPAN_EVENTS`` per span (the rest counted in
    ``proctrace.dropped_log_events``)."""
    span = _span.current_span() or _ids.main_span()  # none current: the main program's
    if not isinstance(span, _span.Span) or not span.sampled:
        return
    if len(span.events) >= MAX_SPAN_EVENTS:
        span.attributes[DROPPED_LOG_EVENTS] = span.attributes.get(DROPPED_LOG_EVENTS, 0) + 1
        return
    attrs = event_attributes(items, level, _max_repr if max_repr is None else max_repr)
    # The name is a message too (a stdlib record's, formatted with its arguments): cleaned.
    text = _event_text(name, _max_repr)
    span.events.append((text, time.time_ns(), attrs))


def event_attributes(items: Iterable[tuple[Any, Any]], level: str, limit: int) -> dict[str, Any]:
    """A span event's attributes from a log event's keys and values (see add_span_event)."""
    given = _arguments.given
    attrs = {
        str(k): _args.REDACTED if _args.is_secret(k, given) else event_value(v, limit)
        for k, v in items
    }
    attrs.setdefault("level", level)
    return attrs


def event_value(value: Any, limit: int) -> Any:
    """A log event's value as a span event's attribute (under a key that is not secret):
    strings cleaned, other values than str, int, float and bool as reprs."""
    kind = type(value)
    if kind is str:
        return _event_text(value, limit)
    if kind in _PRIMITIVE:
        return value
    given = _arguments.given
    return _arguments.hide_known(_args.safe_repr(_args.scrub(value, given), limit, given))


def _event_text(text: str, limit: int) -> str:
    """A log event's message or string value: cleaned (of the values of secret arguments too),
    cut as a repr is, at a length a message needs."""
    limit = max(limit, MAX_EVENT_TEXT)
    text = _arguments.hide_known(text[: limit + 2048])
    return _args.cleaned_text(text, limit, _arguments.given)


# The longest text (a message, a string value) a log event keeps in its span event, or
# ``max_repr`` if longer: a child that logged 20 MB lost its span (its end record was
# longer than the agent takes) and made its program wait 9 s at exit.
MAX_EVENT_TEXT = 8192


# The stdlib logger a structlog event is on its way to (structlog configured over the standard
# library): its record is that event again, and must not become a second span event.
_relayed: ContextVar[Any] = ContextVar("proctrace_relayed_event", default=None)


def _relaying(logger: Any, method_name: str) -> None:
    stdlib = sys.modules.get("logging")
    if stdlib is None or not isinstance(logger, stdlib.Logger):
        return
    level = stdlib.getLevelName("ERROR" if method_name == "exception" else method_name.upper())
    if not isinstance(level, int) or logger.isEnabledFor(level):  # else no record is made
        _relayed.set(logger)


def relayed_by_structlog(logger: Any) -> bool:
    """True (once) when ``logger``'s record being made carries a structlog event that is a span
    event already."""
    if _relayed.get() is logger:
        _relayed.set(None)
        return True
    return False


_PRIMITIVE = (str, int, float, bool)


def uses_json(log_format: str) -> bool:
    """True when proctrace's lines are JSON (``auto``: when stderr is not a terminal)."""
    return _use_json(log_format)


def _use_json(log_format: str) -> bool:
    if log_format != "auto":
        return log_format == "json"
    try:
        return not os.isatty(2)
    except OSError:  # pragma: no cover
        return True


def _colors() -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    try:
        return os.isatty(2) and not os.environ.get("NO_COLOR")
    except OSError:  # pragma: no cover
        return False


def configure(
    log_format: str, log_events: bool = True, max_repr: int = 256, quiet: bool = False
) -> None:
    """Set up logging in this process (once per process): structlog now if it is loaded or
    the console format is wanted, else when the program imports it. ``quiet``: proctrace's
    own lifecycle events are span events only, never lines on stderr."""
    global _configured_pid, _log_format, _log_events, _max_repr, _quiet
    if _configured_pid == os.getpid():
        return
    _configured_pid = os.getpid()
    _log_format, _log_events, _max_repr, _quiet = log_format, log_events, max_repr, quiet
    if not _use_json(log_format) or "structlog" in sys.modules:
        _configure_structlog()  # the console renderer is structlog's
    else:
        watch_structlog()


def forked(keys: dict[str, Any], json_lines: bool) -> None:
    """``configure()`` and ``set_process_keys()`` in a fork child its starter prepared: the
    starter set the settings' part (``warm``) and watches for structlog's import already
    (``watch_structlog``), and said whether the lines are JSON (``json_lines``)."""
    global _configured_pid, _process_keys
    _process_keys = keys
    _configured_pid = keys["pid"]
    if not json_lines or "structlog" in sys.modules:
        _configure_structlog()
    elif not _watching_structlog:
        watch_structlog()


_watching_structlog = False  # the import hook below is in place (fork children inherit it)


def watch_structlog() -> None:
    """Configure structlog the moment the program imports it, in a process that configured
    its logging (``configure()``): a hook put in place once, also by a starter before it
    forks (it does nothing in a process whose logging proctrace did not configure)."""
    global _watching_structlog
    if not _watching_structlog:
        _watching_structlog = True
        _onimport.when_imported("structlog", _structlog_imported)


def _structlog_imported(module: object) -> None:
    global _watching_structlog
    _watching_structlog = False
    if _configured_pid == os.getpid():
        _configure_structlog()


_log_format = "auto"
_quiet = False
# True when proctrace configured structlog: its events can then be rendered here, without
# structlog's logger machinery, to exactly the same lines. Else they go through the
# application's own structlog configuration.
_ours = False


def _configure_structlog() -> None:
    global _ours
    import structlog

    log_format = _log_format

    if structlog.is_configured():
        current = structlog.get_config()["processors"]
        processors = list(current)
        if add_process_context not in processors:
            # Span events are taken last before rendering, after the application's own
            # processors (a redacting one among them) have had their say.
            chain = [add_process_context, *processors[:-1], attach_to_span, *processors[-1:]]
            if isinstance(current, list):  # in place: loggers cached on first use hold it
                current[:] = chain
            else:
                structlog.configure(processors=chain)
        return
    _ours = True
    structlog.configure(
        processors=prepare(log_format),
        logger_factory=LineWriterFactory(),
        cache_logger_on_first_use=True,
    )


_prepared: dict[tuple[str, bool, bool], list[Any]] = {}


def prepare(log_format: str) -> list[Any]:
    """proctrace's processor chain, built once per process and run once on a sample event.

    Called in a program before it forks, so fork children inherit the chain with
    every lazy part of it already done, instead of paying for that in each child.
    """
    key = (log_format, _use_json(log_format), _colors())
    chain = _prepared.get(key)
    if chain is not None:
        return chain
    import structlog

    renderer: Any
    if key[1]:
        renderer = structlog.processors.JSONRenderer()
        exc: list[Any] = [structlog.processors.format_exc_info]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=key[2])
        exc = []
    chain = [
        add_process_context,
        attach_to_span,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.StackInfoRenderer(),
        *exc,
        renderer,
    ]
    sample: Any = {"event": "warm-up", "args": [], "kwargs": {}, "duration_ms": 0.0}
    for processor in chain:
        if processor is not attach_to_span:
            sample = processor(None, "info", sample)
    _prepared[key] = chain
    return chain


def warm(lock_path: str, settings: Any) -> None:
    """Before a fork: open the lock file, run the native renderer once without writing, and
    set the settings ``configure()`` would set: a fork child inherits all three ready,
    instead of doing that work in every child. (In a process whose logging proctrace did not
    configure, those settings are read by nothing.)"""
    global _log_format, _log_events, _max_repr, _quiet
    if _configured_pid != os.getpid():
        _log_format, _log_events = settings.log_format, settings.log_events
        _max_repr, _quiet = settings.max_repr, settings.quiet
    if not _lines.warm(lock_path):
        return  # done for this run already
    _render("info", "warm-up", None, {"args": [], "kwargs": {}}, attach=False)


def emit(level: str, event: str, exc_info: BaseException | None = None, **keys: Any) -> None:
    """One lifecycle event: through the application's structlog configuration if it has one
    (or for the console renderer), else rendered here as proctrace's chain would. Quiet
    (``PROCTRACE_QUIET``, ``proctrace run --quiet``): only the span event, no line."""
    if _quiet:
        event_dict: dict[str, Any] = {**keys, "event": event}
        attach_to_span(None, level, add_process_context(None, level, event_dict))
        return
    if not rendered_here(_log_format):
        import structlog

        log = getattr(_lifecycle_logger(structlog), level)
        if exc_info is not None:  # the traceback as text, cleaned: not the exception itself
            log(event, **keys, exception=_exception_text(exc_info))
        else:
            log(event, **keys)
        return
    LineWriter().msg(_render(level, event, exc_info, keys))


def _lifecycle_logger(structlog: Any) -> Any:
    """The logger of proctrace's own events where the program configured structlog: its
    configuration, written to stderr though when that prints to stdout (a program's output
    there is its own: what proctrace adds goes to stderr)."""
    config = structlog.get_config()
    file = getattr(config["logger_factory"], "_file", False)  # Print/Write/BytesLoggerFactory
    stdout = sys.stdout, sys.__stdout__
    if file is not None and file not in (*stdout, *(getattr(f, "buffer", None) for f in stdout)):
        return structlog.get_logger("proctrace")  # logging's handlers, a file: as configured
    return structlog.wrap_logger(
        LineWriter(), processors=config["processors"], wrapper_class=config["wrapper_class"],
        context_class=config["context_class"],
    )


def rendered_here(log_format: str) -> bool:
    """True when proctrace's lines are rendered by ``_render`` (JSON, no structlog chain of
    the application's in the way), False when they go through structlog."""
    structlog_module = sys.modules.get("structlog")
    return not (
        structlog_module is not None
        and structlog_module.is_configured()
        and (not _ours or not _use_json(log_format))
    )


def _render(
    level: str,
    event: str,
    exc_info: BaseException | None,
    keys: dict[str, Any],
    attach: bool = True,
) -> str:
    """The same chain as prepare()'s, for JSON: keys, process context, level, timestamp."""
    event_dict: dict[str, Any] = dict(keys)
    event_dict["event"] = event
    add_process_context(None, level, event_dict)
    if attach:
        attach_to_span(None, level, event_dict)
    event_dict["level"] = level
    event_dict["timestamp"] = _lines.timestamp()
    if exc_info is not None:
        event_dict["exception"] = _exception_text(exc_info)
    return json.dumps(event_dict, default=repr)


def _exception_text(exc: BaseException) -> str:
    """A ``process failed`` line's ``exception``: the traceback, as the span's ``exception``
    event has it (secrets cleaned), without its last newline."""
    text = _span.traceback_text(exc)
    return text[:-1] if text.endswith("\n") else text
