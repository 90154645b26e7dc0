"""Whole lines on the stderr every process of a run shares, and their timestamps.

Many children share one stderr pipe. A single write of up to PIPE_BUF (4096) bytes is
whole, but a longer one (a traceback, say) can be split by any other process's write,
short or long. So a longer line is written holding a POSIX lock on a file of the run
that all its processes share, exclusively, and a short one holding that lock shared:
short lines never wait for each other (with 16 children logging at once, an exclusive
lock for every line cost each line about 0.5 ms of waiting), only for a long line being
written. A thread lock keeps the threads of one process in turn.
"""

from __future__ import annotations

import _thread
import fcntl
import os
import select
import time
from typing import Any

from .._core import fds as _fds

_lock_path: str | None = None
# An open descriptor of the lock file. POSIX record locks belong to the process that takes
# them, not to the descriptor, so fork children can use the one they inherit.
_lock_fd: int | None = None
_thread_lock = _thread.allocate_lock()


def _after_fork_in_child() -> None:
    _thread_lock._at_fork_reinit()  # type: ignore[attr-defined]  # held by another thread?


os.register_at_fork(after_in_child=_after_fork_in_child)


def set_lock_path(path: str | None) -> None:
    """A file the run's processes lock around each line they write to the shared stderr."""
    global _lock_path, _lock_fd
    if path != _lock_path:
        _lock_path, _lock_fd = path, None


def warm(path: str) -> bool:
    """Open the lock file at ``path`` now (fork children inherit it open); False if it was
    open already."""
    if path == _lock_path and _lock_fd is not None:
        return False
    set_lock_path(path)
    _locked_fd()
    return True


def _locked_fd() -> int | None:
    global _lock_fd
    if _lock_path is None:
        return None
    if _lock_fd is None:
        # In the run's private (0700) directory; never through a link all the same.
        # Read and write: a shared (read) lock needs a descriptor open for reading.
        _lock_fd = _fds.moved(
            os.open(_lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        )
    return _lock_fd


_PIPE_BUF = getattr(select, "PIPE_BUF", 512)  # 4096 on Linux; POSIX guarantees 512


class LineWriter:
    """A structlog logger that writes each rendered event as one whole line."""

    def msg(self, message: str | bytes) -> None:
        if isinstance(message, bytes):  # a renderer for structlog's BytesLogger
            write_line(message + b"\n")
        else:
            write_line((message + "\n").encode("utf-8", "backslashreplace"))

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg


def write_line(data: bytes, again: bool = True) -> None:
    """Write one whole line (``data`` ends with its newline) to stderr."""
    global _lock_fd
    try:
        with _thread_lock:
            lock = _lock_fd if _lock_fd is not None else _locked_fd()
            if lock is None:
                _write(data)
                return
            _lockf(lock, _LOCK_SH if len(data) <= _PIPE_BUF else _LOCK_EX)
            try:
                written = _os_write(2, data)
                if written < len(data):  # a short write (a full pipe, a signal): the rest
                    _write(data[written:])
            finally:
                _lockf(lock, _LOCK_UN)
    except OSError as exc:  # stderr closed: logging must never break the task
        if again and _fds.not_ours(exc) and _lock_fd is not None:
            _lock_fd = None  # the program closed the lock file (os.closerange): open it again
            write_line(data, again=False)


# Bound once: each module attribute a fork child looks up is one more object it touches.
_lockf, _LOCK_SH, _LOCK_EX, _LOCK_UN = fcntl.lockf, fcntl.LOCK_SH, fcntl.LOCK_EX, fcntl.LOCK_UN
_os_write = os.write


def _write(data: bytes) -> None:
    while data:
        data = data[os.write(2, data) :]


class LineWriterFactory:
    def __call__(self, *args: Any) -> LineWriter:
        return LineWriter()


def timestamp() -> str:
    """The ``timestamp`` of a line, as structlog's ``TimeStamper(fmt="iso", utc=True)``."""
    return _timestamp(time.time_ns())


def timestamp_of(ns: int) -> bytes:
    """``timestamp()`` at ``ns`` as the JSON string a line holds. The text up to the minute
    is kept from the last call (a starter makes it before it forks: ``minute_of``)."""
    seconds, micros = divmod(ns // 1000, 1_000_000)
    minute, second = divmod(seconds, 60)
    prefix = _minute[1] if _minute[0] == minute else minute_of(ns)
    return b'%s%02d.%06dZ"' % (prefix, second, micros) if micros else b'%s%02dZ"' % (prefix, second)


def minute_of(ns: int) -> bytes:
    """The start of ``timestamp_of(ns)``, up to its minute (kept for the next calls)."""
    global _minute
    minute = ns // 60_000_000_000
    if _minute[0] != minute:
        text = time.strftime("%Y-%m-%dT%H:%M:", time.gmtime(minute * 60))
        _minute = (minute, b'"' + text.encode())
    return _minute[1]


_minute: tuple[int, bytes] = (-1, b"")


def _timestamp(ns: int) -> str:
    # Without the datetime module (a smaller program forks faster): the same text as
    # datetime.now(UTC).isoformat(), which leaves out a zero fraction.
    seconds, micros = divmod(ns // 1000, 1_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{text}.{micros:06d}Z" if micros else f"{text}Z"
