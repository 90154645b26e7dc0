"""How a traced call ended: the status and message of its span, the exit code of its process."""

from __future__ import annotations

from . import span as _span


def exit_code(exc: SystemExit) -> int:
    # The same rule as multiprocessing's BaseProcess._bootstrap.
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    return 1


INTERRUPTED = "interrupted (KeyboardInterrupt)"


def failed_status(span: _span.Span, exc: BaseException) -> tuple[int, str]:
    """ERROR, with the ``exception`` event; Ctrl-C (KeyboardInterrupt) is said plainly."""
    if isinstance(exc, KeyboardInterrupt):
        return _span.STATUS_ERROR, INTERRUPTED
    if span.sampled:
        span.record_exception(exc)
    return _span.STATUS_ERROR, f"{type(exc).__name__}: {exc}"
