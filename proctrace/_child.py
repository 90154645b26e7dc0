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
from collections.abc import Callable, Mapping
from typing import Any

from . import _args, _config, _decorator, _logs, _patch, _span, _wire

_ENTERED_ATTR = "_proctrace_entered"
_settings_cache: tuple[int, _config.Settings] | None = None


def _exit_code(exc: SystemExit) -> int:
    # The same rule as multiprocessing's BaseProcess._bootstrap.
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    return 1


def function_name(target: Callable[..., Any]) -> str:
    """Module-qualified name, with ``__main__`` for a spawn child's ``__mp_main__``."""
    module = getattr(target, "__module__", None) or "?"
    if module == "__mp_main__":
        module = "__main__"
    return f"{module}.{getattr(target, '__qualname__', type(target).__qualname__)}"


def carrier_settings(carrier: dict[str, Any]) -> _config.Settings:
    """The carrier's settings, decoded once per process."""
    global _settings_cache
    raw = carrier["settings"]
    if _settings_cache is None or _settings_cache[0] != id(raw):
        _settings_cache = (id(raw), _config.Settings.from_dict(raw))
    return _settings_cache[1]


def prepare_fork(
    target: Callable[..., Any], spec: _decorator.TraceSpec, carrier: dict[str, Any]
) -> None:
    """Do in the starter what every fork child would otherwise do again: decode the
    settings, inspect the target's parameters, build the log chain."""
    settings = carrier_settings(carrier)
    if spec.record_args:
        _args.secret_positions(target, spec.redact + settings.redact)
    if "structlog" in sys.modules:  # else children will not load it either
        _logs.prepare(settings.log_format)
    _logs.warm(_lock_path(carrier))


def _lock_path(carrier: dict[str, Any]) -> str:
    return os.path.join(os.path.dirname(carrier["socket"]), "stderr.lock")


def call(
    wrapper: Callable[..., Any],
    target: Callable[..., Any],
    spec: _decorator.TraceSpec,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> Any:
    """The ``@traced`` wrapper's body: a process span for the process target, else a span."""
    proc = multiprocessing.current_process()
    carrier: dict[str, Any] | None = getattr(proc, _patch.CARRIER_ATTR, None)
    # The first traced call of a child whose starter announced a span is the process
    # itself, also when other decorators wrap the target around this one.
    if carrier is not None and "span" in carrier and not getattr(proc, _ENTERED_ATTR, False):
        return run_process(target, spec, carrier, args, kwargs)
    return run_call(target, spec, carrier, args, kwargs)


def _attributes(
    proc: Any,
    carrier: dict[str, Any] | None,
    target: Callable[..., Any],
    spec: _decorator.TraceSpec,
    settings: _config.Settings,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    shared: bool = False,
) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """The span's attributes; with ``shared``, the process's own go once per connection."""
    process_attributes = _process_attributes(proc, carrier)
    if shared:
        _wire.set_defaults(process_attributes)
        attributes: dict[str, Any] = {}
    else:
        attributes = dict(process_attributes)
    attributes["code.function.name"] = function_name(target)
    shown_args: list[str] = []
    shown_kwargs: dict[str, str] = {}
    if spec.record_args:
        shown_args, shown_kwargs = _args.describe(
            target, args, kwargs, limit=settings.max_repr, extra=spec.redact + settings.redact
        )
        attributes["proctrace.args"] = shown_args
        for key, value in shown_kwargs.items():
            attributes[f"proctrace.kwargs.{key}"] = value
    return attributes, shown_args, shown_kwargs


_process_cache: tuple[int, int, dict[str, Any]] | None = None


def _process_attributes(proc: Any, carrier: dict[str, Any] | None) -> dict[str, Any]:
    """The attributes every span of this process shares (computed once per process)."""
    global _process_cache
    pid = os.getpid()
    if _process_cache is None or _process_cache[:2] != (pid, id(carrier)):
        attributes: dict[str, Any] = {
            "process.pid": pid,
            "process.parent_pid": os.getppid(),
            "proctrace.process.name": proc.name,
        }
        if carrier is not None:
            attributes["proctrace.start_method"] = carrier["start_method"]
            attributes["proctrace.starter.pid"] = carrier["starter_pid"]
        _process_cache = (pid, id(carrier), attributes)
    return _process_cache[2]


def _span_name(target: Callable[..., Any], spec: _decorator.TraceSpec) -> str:
    return spec.name or str(getattr(target, "__qualname__", function_name(target)))


def run_call(
    target: Callable[..., Any],
    spec: _decorator.TraceSpec,
    carrier: dict[str, Any] | None,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    parent: tuple[str, str] | None = None,
) -> Any:
    """A span for one call, under ``parent`` or the current span (a pool task, a direct call)."""
    parent = parent or _span.current_ids()
    if carrier is not None:
        settings = carrier_settings(carrier)
        parent = parent or _span.parse_traceparent(carrier["traceparent"])
        if _wire.address() != carrier["socket"]:  # a spawn child whose target is not traced
            _wire.set_address(carrier["socket"])
    else:
        from . import _runtime

        if not _runtime.is_main_program():
            return target(*args, **kwargs)  # a child started before tracing began
        runtime = _runtime.ensure()
        if runtime is None:
            return target(*args, **kwargs)
        settings = runtime.settings
        parent = parent or runtime.root_ids()
    if settings.disabled or parent is None:
        return target(*args, **kwargs)
    proc = multiprocessing.current_process()
    attributes, _, _ = _attributes(
        proc, carrier, target, spec, settings, args, kwargs, shared=True
    )
    span = _span.Span(
        _span_name(target, spec), parent[0], parent[1], attributes, announce=False, shared=True
    )
    status, message = _span.STATUS_UNSET, ""
    try:
        with _span.activate(span):
            return target(*args, **kwargs)
    except BaseException as exc:
        span.record_exception(exc)
        status, message = _span.STATUS_ERROR, f"{type(exc).__name__}: {exc}"
        raise
    finally:
        span.end(status, message)


def run_process(
    target: Callable[..., Any],
    spec: _decorator.TraceSpec,
    carrier: dict[str, Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> Any:
    """The child's own span around its target, with its start and end logs."""
    proc = multiprocessing.current_process()
    setattr(proc, _ENTERED_ATTR, True)
    settings = carrier_settings(carrier)
    parent = _span.parse_traceparent(carrier["traceparent"])
    if settings.disabled or parent is None:
        return target(*args, **kwargs)
    _wire.set_address(carrier["socket"])
    if carrier.get("instrument"):
        from . import _instrument

        _instrument.instrument()  # grandchildren and pool tasks of this child too
    attributes, shown_args, shown_kwargs = _attributes(
        proc, carrier, target, spec, settings, args, kwargs
    )
    _logs.configure(settings.log_format, settings.log_events, settings.max_repr)
    _logs.set_lock_path(_lock_path(carrier))
    _logs.set_process_keys(
        process_name=attributes["proctrace.process.name"],
        pid=attributes["process.pid"],
        ppid=attributes["process.parent_pid"],
        start_method=attributes["proctrace.start_method"],
        function=attributes["code.function.name"],
    )
    # The span id was chosen by the starter, which announced the span at start():
    # the collector then knows of this process even if it dies before getting here.
    span = _span.Span(
        _span_name(target, spec), parent[0], parent[1], attributes, span_id=carrier.get("span")
    )
    started = time.perf_counter()
    status, message, exit_code = _span.STATUS_UNSET, "", 0
    failure: BaseException | None = None
    with _span.activate(span):
        _logs.emit("info", "process started", args=shown_args, kwargs=shown_kwargs)
        try:
            return target(*args, **kwargs)
        except SystemExit as exc:
            exit_code = _exit_code(exc)
            if exit_code != 0:
                status, message = _span.STATUS_ERROR, f"sys.exit({exc.code!r})"
            raise
        except BaseException as exc:
            failure, exit_code = exc, 1
            span.record_exception(exc)
            status, message = _span.STATUS_ERROR, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 3)
            if failure is not None:
                _logs.emit(
                    "error",
                    "process failed",
                    exc_info=failure,
                    duration_ms=duration_ms,
                    exit_code=exit_code,
                )
            else:
                _logs.emit("info", "process finished", duration_ms=duration_ms, exit_code=exit_code)
            span.end(status, message, {"process.exit.code": exit_code})

