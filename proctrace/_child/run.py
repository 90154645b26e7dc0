"""What runs around a traced function: the process span, its logs, and how it ended.

As a process target (the function a child was started with), the call opens
the child's span under the carrier's parent, logs ``process started`` and
``process finished``/``process failed``, and records the exit code the
process is about to have. Called any other way (a pool task, a direct call),
it is a span under the current one. Exceptions and ``sys.exit`` propagate
unchanged, so multiprocessing behaves exactly as without proctrace.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._core import arguments as _arguments
from .._core import config as _config
from .._core import ids as _ids
from .._core import names
from .._core.ids import SpanRef, parse_traceparent
from .._core.spec import TraceSpec, function_name, span_name
from . import lines as _lines
from . import logs as _logs
from . import outcome as _outcome
from . import span as _span
from . import usage as _usage
from . import wire as _wire
from .follow import follow_program

if TYPE_CHECKING:
    from . import forkplan as _forkplan

_modules = sys.modules

_settings_cache: tuple[int, _config.Settings] | None = None


def seed_settings(raw: dict[str, Any], settings: _config.Settings) -> None:
    """``settings`` is what ``raw`` decodes to (the run's own, in the process that set it up):
    carriers made from ``raw`` give that very object, which fork children compare by
    identity (``follow_program``)."""
    global _settings_cache
    _settings_cache = (id(raw), settings)


def carrier_settings(carrier: dict[str, Any]) -> _config.Settings:
    """The carrier's settings, decoded once per process."""
    global _settings_cache
    raw = carrier["settings"]
    if _settings_cache is None or _settings_cache[0] != id(raw):
        _settings_cache = (id(raw), _config.Settings.from_dict(raw))
    return _settings_cache[1]


def prepare_fork(
    proc: Any,
    target: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    spec: TraceSpec,
    carrier: dict[str, Any],
) -> _forkplan.Plan | None:
    """Do in the starter what every fork child would otherwise do again: decode the
    settings, build the log chain, and prepare the child's start (``forkstart``). Returns
    the plan the child was prepared from, for the children like it (``forkstart.prepare``)."""
    # The fork path's modules, loaded by the starter (a spawn or forkserver child never
    # needs them); ``forked`` too, so that the children find it loaded.
    from . import forked  # noqa: F401
    from . import forkplan as _forkplan
    from . import forkstart as _forkstart

    settings = carrier_settings(carrier)
    if "structlog" in sys.modules:  # else children will not load it either
        _logs.prepare(settings.log_format)
    else:
        _logs.watch_structlog()  # each child would otherwise put its own hook in place
    _logs.warm(_lock_path(carrier), settings)
    plan = _forkplan.plan_for(target, spec, carrier, settings)
    if plan is not None:
        _forkstart.prepare(plan, proc, args, kwargs, carrier)
    return plan


def _lock_path(carrier: dict[str, Any]) -> str:
    return os.path.join(os.path.dirname(carrier["socket"]), names.RUN_LOCK)


def carrier_of(proc: Any) -> dict[str, Any] | None:
    """The carrier a process object was started with, if any."""
    carrier = getattr(proc, names.CARRIER_ATTR, None)
    return carrier if isinstance(carrier, dict) else None


def is_process_target(proc: Any, carrier: dict[str, Any] | None) -> bool:
    """True when a traced call here is the child's process target: its starter announced a
    span, and the span is not open yet (also when other decorators wrap the target)."""
    if carrier is None or "span" not in carrier:
        return False
    return not getattr(proc, names.ENTERED_ATTR, False)


def in_main_program() -> bool:
    """True in the program's own process; False in children and while a child imports main."""
    current = multiprocessing.current_process()
    return multiprocessing.parent_process() is None and not getattr(current, "_inheriting", False)


def current_parent() -> SpanRef | None:
    """``(trace_id, span_id)`` of the span current here, if any."""
    return _span.current_ids()


def _attributes(
    proc: Any,
    carrier: dict[str, Any] | None,
    target: Callable[..., Any],
    spec: TraceSpec,
    settings: _config.Settings,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    shared: bool = False,
) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """The span's attributes; with ``shared``, the process's own go once per connection."""
    shared_attributes = process_attributes(proc, carrier)
    if shared:
        _wire.set_defaults(shared_attributes)
        attributes: dict[str, Any] = {}
    else:
        attributes = dict(shared_attributes)
    attributes[names.FUNCTION] = function_name(target)
    shown_args: list[str] = []
    shown_kwargs: dict[str, str] = {}
    if spec.record_args:
        shown_args, shown_kwargs = _arguments.describe(
            target, args, kwargs, limit=settings.max_repr, extra=spec.redact + settings.redact
        )
        attributes[names.ARGS] = shown_args
        for key, value in shown_kwargs.items():
            attributes[names.KWARGS_PREFIX + key] = value
    return attributes, shown_args, shown_kwargs


_process_cache: tuple[int, int, dict[str, Any]] | None = None


def process_attributes(proc: Any, carrier: dict[str, Any] | None) -> dict[str, Any]:
    """The attributes every span of this process shares (computed once per process)."""
    global _process_cache
    pid = _ids.pid()
    if _process_cache is None or _process_cache[:2] != (pid, id(carrier)):
        attributes: dict[str, Any] = {
            names.PID: pid,
            names.PARENT_PID: os.getppid(),
            names.PROCESS_NAME: proc.name,
        }
        if carrier is not None:
            attributes[names.START_METHOD] = carrier["start_method"]
            attributes[names.STARTER_PID] = carrier["starter_pid"]
        _process_cache = (pid, id(carrier), attributes)
    return _process_cache[2]


def open_call(
    target: Callable[..., Any],
    spec: TraceSpec,
    carrier: dict[str, Any] | None,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    parent: SpanRef | None = None,
    *,
    settings: _config.Settings | None = None,
    announce: bool = False,
    extra: Mapping[str, Any] | None = None,
    span_id: str | None = None,
    links: list[tuple[str, str, dict[str, Any]]] | None = None,
) -> _span.Span | None:
    """The span of one call, under ``parent`` or the current span (None: nothing to record).

    In a traced child the carrier says where spans go; in the main program the
    caller passes the run's ``settings`` and the main span as ``parent``'s fallback.
    ``announce`` sends the span's start at once (the collector ends it should this process
    die first: a Dask task); ``extra`` adds attributes; ``span_id`` is the span's id when the
    caller chose it, ``links`` its links (a Dask task's earlier attempt).
    """
    parent = _span.current_ids() if parent is None else parent
    if carrier is not None:
        settings = carrier_settings(carrier)
        parent = parent or parse_traceparent(carrier["traceparent"])
        if _wire.address() != carrier["socket"]:  # a spawn child whose target is not traced
            _wire.set_address(carrier["socket"])
    if settings is None or settings.disabled or parent is None:
        return None
    if carrier is not None:
        follow_program(settings, child=True)
    if not parent.sampled:
        # Nothing is recorded: the call runs as it would untraced, under the (unsampled)
        # span already current, whose trace id its logs and children keep.
        return None
    proc = multiprocessing.current_process()
    attributes, _, _ = _attributes(
        proc, carrier, target, spec, settings, args, kwargs, shared=not announce
    )
    if extra:
        attributes.update(extra)
    return _span.Span(
        span_name(target, spec),
        parent[0],
        parent[1],
        attributes,
        announce=announce,
        shared=not announce,
        task=announce,
        span_id=span_id,
        links=links,
    )


def run_call(
    target: Callable[..., Any],
    spec: TraceSpec,
    carrier: dict[str, Any] | None,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    parent: SpanRef | None = None,
    *,
    settings: _config.Settings | None = None,
    announce: bool = False,
    extra: Mapping[str, Any] | None = None,
    span_id: str | None = None,
    links: list[tuple[str, str, dict[str, Any]]] | None = None,
) -> Any:
    """A span for one call (a pool task, a direct call); see ``open_call()``."""
    span = open_call(
        target, spec, carrier, args, kwargs, parent, settings=settings, announce=announce,
        extra=extra, span_id=span_id, links=links,
    )
    if span is None:
        if parent is not None and not parent.sampled:  # handed in with the call: keep it
            with _span.activate(_span.Parent(*parent)):
                return target(*args, **kwargs)
        return target(*args, **kwargs)
    status, message = _span.STATUS_UNSET, ""
    pid = _ids.pid()
    cpu0 = time.thread_time_ns()  # this thread's: other threads' work is not the call's
    try:
        with _span.activate(span):
            return target(*args, **kwargs)
    except BaseException as exc:
        if _ids.pid() == pid:
            status, message = _outcome.failed_status(span, exc)
        raise
    finally:
        if _ids.pid() == pid:  # else a copy made by os.fork() in the call: not its span
            cpu = (time.thread_time_ns() - cpu0) // 1000 / 1e6  # in whole µs
            span.end(status, message, {names.TASK_CPU: cpu} if span.sampled else None)


async def await_call(
    target: Callable[..., Awaitable[Any]],
    spec: TraceSpec,
    carrier: dict[str, Any] | None,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    parent: SpanRef | None = None,
    *,
    settings: _config.Settings | None = None,
) -> Any:
    """``run_call()`` for a coroutine function: the span covers the awaited work."""
    span = open_call(target, spec, carrier, args, kwargs, parent, settings=settings)
    if span is None:
        return await target(*args, **kwargs)
    status, message = _span.STATUS_UNSET, ""
    pid = _ids.pid()
    try:
        with _span.activate(span):
            return await target(*args, **kwargs)
    except BaseException as exc:
        if _ids.pid() == pid:
            status, message = _outcome.failed_status(span, exc)
        raise
    finally:
        if _ids.pid() == pid:  # else a copy made by os.fork() in the call: not its span
            span.end(status, message)


def run_process(
    target: Callable[..., Any],
    spec: TraceSpec,
    carrier: dict[str, Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> Any:
    """The child's own span around its target, with its start and end logs."""
    proc = multiprocessing.current_process()
    prepared = carrier.pop(names.FORK_PREPARED, None)
    if prepared is not None:  # a fork child: its start was done by its starter (which
        # loaded the module that runs it: see prepare_fork)
        return _modules[names.FORKED_MODULE].run(proc, prepared, target, args, kwargs)
    setattr(proc, names.ENTERED_ATTR, _ids.pid())  # whose span is open (see _hooks.environ)
    settings = carrier_settings(carrier)
    parent = parse_traceparent(carrier["traceparent"])
    if settings.disabled or parent is None:
        return target(*args, **kwargs)
    _wire.set_address(carrier["socket"])
    attributes, shown_args, shown_kwargs = _attributes(
        proc, carrier, target, spec, settings, args, kwargs
    )
    _logs.configure(
        settings.log_format, settings.log_events, settings.max_repr, settings.quiet
    )
    follow_program(settings, child=True)
    _lines.set_lock_path(_lock_path(carrier))
    _logs.set_process_keys(
        process_name=attributes[names.PROCESS_NAME],
        pid=attributes[names.PID],
        ppid=attributes[names.PARENT_PID],
        start_method=attributes[names.START_METHOD],
        function=attributes[names.FUNCTION],
    )
    # The span id was chosen by the starter, which announced the span at start():
    # the collector then knows of this process even if it dies before getting here.
    span = _span.Span(
        span_name(target, spec),
        parent[0],
        parent[1],
        attributes,
        span_id=carrier.get("span"),
        sampled=parent.sampled,
    )
    started = time.perf_counter()
    status, message, exit_code = _span.STATUS_UNSET, "", 0
    failure: BaseException | None = None
    pid = attributes[names.PID]
    with _span.activate(span):
        _logs.emit("info", "process started", args=shown_args, kwargs=shown_kwargs)
        try:
            return target(*args, **kwargs)
        except SystemExit as exc:
            exit_code = _outcome.exit_code(exc, carrier["start_method"])
            status, message = _outcome.exited_status(exc, exit_code)
            raise
        except BaseException as exc:
            failure, exit_code = exc, 1
            if _ids.pid() == pid:
                status, message = _outcome.failed_status(span, exc)
            raise
        finally:
            # A copy of this process made by os.fork() in the target (not by
            # multiprocessing) ends here too: this span and its lines are not its own.
            if _ids.pid() == pid:
                duration_ms = round((time.perf_counter() - started) * 1000, 3)
                _outcome.log_end(duration_ms, exit_code, failure)
                use = _usage.process_use(carrier["start_method"]) if span.sampled else {}
                span.end(status, message, {names.EXIT_CODE: exit_code, **use})
