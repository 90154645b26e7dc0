"""How a traced call ended: the status and message of its span, the exit code of its process."""

from __future__ import annotations

from typing import Any

from . import logs as _logs
from . import span as _span

_C_INT = 1 << 31  # os._exit() takes a C int
_C_LONG = 1 << 63  # the interpreter's own exit takes a C long (on 64-bit POSIX)


def exit_status(code: object, start_method: str | None = None) -> int:
    """The status the OS reports for a process ending with ``SystemExit(code)``: what
    ``Process.exitcode`` and a shell see, not the code as given.

    ``None`` is 0, an int (``True`` included) its low 8 bits (``sys.exit(256)`` exits 0,
    ``sys.exit(-1)`` 255), anything else 1 (CPython prints it to stderr). An int beyond a C
    int makes ``os._exit()`` raise in a fork or forkserver child, which then ends with 1;
    the main program and a spawn child take it as a C long, -1 when it does not fit.
    ``start_method``: the child's, or None for the main program.
    """
    if code is None:
        return 0
    if not isinstance(code, int):
        return 1
    if -_C_INT <= code < _C_INT:
        return code & 0xFF
    if start_method in ("fork", "forkserver"):
        return 1
    return code & 0xFF if -_C_LONG <= code < _C_LONG else 255


def exit_code(exc: SystemExit, start_method: str | None = None) -> int:
    """``exit_status()`` of a ``SystemExit``."""
    return exit_status(exc.code, start_method)


def exited_status(exc: SystemExit, code: int) -> tuple[int, str]:
    """The status and message of a span whose process exits with ``code`` by ``exc``."""
    if code == 0:
        return _span.STATUS_UNSET, ""
    return _span.STATUS_ERROR, _span.cleaned(f"sys.exit({exc.code!r})")


INTERRUPTED = "interrupted (KeyboardInterrupt)"


def failed_status(span: _span.Span, exc: BaseException) -> tuple[int, str]:
    """ERROR, with the ``exception`` event; Ctrl-C (KeyboardInterrupt) is said plainly. The
    message is cleaned of secrets as the event is (``span.cleaned``)."""
    if isinstance(exc, KeyboardInterrupt):
        return _span.STATUS_ERROR, INTERRUPTED
    if span.sampled:
        span.record_exception(exc)
    return _span.STATUS_ERROR, failure_message(exc)


def failure_message(exc: BaseException) -> str:
    """``Type: message`` of an exception, secrets cleaned: a span's status message."""
    return _span.cleaned(f"{type(exc).__name__}: {_span.exception_message(exc)}")


def log_end(duration_ms: float, exit_code: int, failure: BaseException | None) -> None:
    """The process's last line: ``process failed`` (with the traceback after an exception),
    or ``process finished``, as its span's status says."""
    keys: dict[str, Any] = {"duration_ms": duration_ms, "exit_code": exit_code}
    if failure is not None:
        _logs.emit("error", "process failed", exc_info=failure, **keys)
    elif exit_code:  # sys.exit(n) whose status is not 0: a failure, as its span says
        _logs.emit("error", "process failed", **keys)
    else:
        _logs.emit("info", "process finished", **keys)
