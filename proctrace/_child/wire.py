"""The process's one connection to the run's collector: newline-delimited JSON records.

Every process opens its own connection lazily; a fork child closes the copy it
inherited (``os.register_at_fork``) so the collector sees each process's end
as the end of that process's connection. Sending never waits on the network:
the peer is a Unix socket on this machine, in a directory only this user can
enter.
"""

from __future__ import annotations

import _socket
import _thread
import json
import os
import struct
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._core import fds as _fds
from .._core import ring as _fmt
from .._core.records import ENCODED_END, ENCODED_START

if TYPE_CHECKING:
    from .ring import Writer

# One encoder for every record: json.dumps() with options builds a new one each call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
_lock = _thread.RLock()
_sock: _socket.socket | None = None
_path: str | None = None
_warned = False
# Set once the collector is found gone (refused, reset, not there): the agent never comes
# back within a run, and trying again for every record cost a pool worker ~100 µs a task
# (a socket, a connect, a ring made and thrown away) after its agent died.
_gone = False
_SEND_TIMEOUT = 5.0
# What a collector that is gone answers; a send that timed out (EAGAIN) is not one of them.
_GONE_ERRORS = (ConnectionRefusedError, ConnectionResetError, BrokenPipeError, FileNotFoundError)


def set_address(path: str) -> None:
    """Point this process at the collector listening on ``path``."""
    global _path, _gone
    if path != _path:
        close()
        _path, _gone = path, False


def address() -> str | None:
    return _path


# Attributes shared by the records of this process that ask for them ("d": 1): sent
# once per connection, so each pool task's record carries only what is its own.
_defaults: tuple[object, bytes] | None = None


def set_defaults(attrs: dict[str, object]) -> None:
    """Make ``attrs`` this connection's shared attributes (a no-op for the same object)."""
    global _defaults
    if _defaults is not None and _defaults[0] is attrs:
        return
    line = json.dumps({"k": "defaults", "attrs": attrs}, separators=(",", ":")).encode()
    with _lock:
        _defaults = (attrs, line + b"\n")
        if _sock is not None:
            try:
                _sock.sendall(_defaults[1])
            except OSError:
                _drop()


def encode(record: Mapping[str, Any]) -> bytes:
    """One record as its line on the wire."""
    return _ENCODER.encode(record).encode() + b"\n"


# SO_SNDTIMEO's value: struct timeval of _SEND_TIMEOUT seconds.
_SEND_TIMEVAL = struct.pack("ll", int(_SEND_TIMEOUT), 0)


def _open(path: str) -> _socket.socket:
    # A blocking socket whose sends give up after _SEND_TIMEOUT (SO_SNDTIMEO): Python's own
    # timeout would poll() before every send, a second system call per record. The C-level
    # socket type: a fork child's connection is opened by its starter for every child, and
    # socket.socket's Python layer is code it would run each time.
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, _fds.moved(sock.detach()))
    try:
        if sock.gettimeout() is not None:  # socket.setdefaulttimeout() in the program
            sock.settimeout(None)
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, _SEND_TIMEVAL)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def _connect() -> _socket.socket:
    global _sock
    assert _path is not None
    sock = _open(_path)
    if _defaults is not None:
        sock.sendall(_defaults[1])
    _sock = sock
    if _close_at_exit_pid != _pid():
        _close_at_exit()
    return sock


_close_at_exit_pid = 0
_pid = os.getpid


def _close_at_exit() -> None:
    """In a child, close the connection as the process ends: last among multiprocessing's
    exit work (after its children are joined, whose ends it reports), where a process that
    shuts its interpreter down (a spawn child) would otherwise leave the socket to the
    garbage collector and its ``ResourceWarning`` (printed under ``-X dev``, ``-W error``).
    The main program's connection is closed by the run's own end."""
    global _close_at_exit_pid
    _close_at_exit_pid = _pid()
    mp = sys.modules.get("multiprocessing")
    if mp is None or mp.parent_process() is None:
        return
    from multiprocessing import util

    util.Finalize(None, close, exitpriority=-(2**31))


def open_for_child(path: str, line: bytes) -> _socket.socket | None:
    """A connection a fork child is about to inherit, its first record (``line``) already
    sent (the starter does this before the fork: see ``forkstart``); None if the collector
    is gone."""
    global _gone
    if _gone and path == _path:
        return None
    try:
        sock = _open(path)
    except OSError as exc:
        _gone = path == _path and isinstance(exc, _GONE_ERRORS)
        return None
    try:
        sock.sendall(line)
    except OSError:
        sock.close()
        return None
    return sock


def adopt(path: str, sock: _socket.socket) -> None:
    """In a fork child, before its target runs: make the connection its starter opened for
    it this process's own (the parent's copy was closed at the fork)."""
    global _path, _sock, _gone
    _path, _sock, _gone = path, sock, False


def send(record: Mapping[str, Any]) -> bool:
    """Send one record; False (with one warning per process) if the collector is gone."""
    line = encode(record)
    with _lock:
        return _send(line)


def send_line(line: bytes) -> bool:
    """Send one record already encoded (``line`` ends with its newline)."""
    with _lock:
        return _send(line)


def send_report(kind: str, span_id: str, value: int, pid: int | None) -> bool:
    """A starter's ``signal``/``exited`` report (``ReportRecord``), formatted without the
    json module: it is sent for every child, and every object a forking parent touches
    costs a page copy while a child shares its memory."""
    if pid is None:
        line = b'{"k":"%s","span":"%s","value":%d}\n' % (kind.encode(), span_id.encode(), value)
    else:
        line = b'{"k":"%s","span":"%s","value":%d,"pid":%d}\n' % (
            kind.encode(), span_id.encode(), value, pid
        )
    with _lock:
        return _send(line)


def send_encoded(span: bytes | bytearray, ring: bool = True) -> bool:
    """A finished span already written as an OTLP ``Span`` message: into this process's ring
    (``_core.ring``) if it has room, else as an ``EncodedRecord``. ``ring=False``: over the
    socket (the end of a task whose start went that way, to stay behind it)."""
    with _lock:
        writer = _ring if ring else None
        if writer is not None and writer.put(_SPAN, span):
            return True
        if ring and not _ring_tried:
            _start_ring()
        return _send(b"%s%s%s\n" % (ENCODED_START, span.hex().encode(), ENCODED_END))


def task_ring() -> Writer | None:
    """This process's ring, made now if it has none yet (a pool task's span is held in its
    slot while the task runs, from the first task on: ``_core.ring``)."""
    with _lock:
        if _ring is None and not _ring_tried:
            _start_ring()
        return _ring


def send_task(record: Mapping[str, Any]) -> bool:
    """A task's start or end record (a Dask task's: two per task), into this process's ring
    if it has room, else over the socket; True when it went into the ring."""
    return send_task_line(encode(record)[:-1])


def send_task_line(line: bytes) -> bool:
    """``send_task()`` of a record already encoded (``line``, without its newline)."""
    with _lock:
        ring = _ring
        if ring is not None and ring.put(_LINE, line):
            return True
        if not _ring_tried:
            _start_ring()
        _send(line + b"\n")
        return False


_SPAN, _LINE = _fmt.SPAN, _fmt.LINE
_ring: Writer | None = None
_ring_tried = False  # for this connection


def _start_ring() -> None:
    """Make this process's ring and hand it to the collector (with the lock held)."""
    global _ring, _ring_tried
    _ring_tried = True
    if _path is None or _gone:
        return
    from . import ring  # with mmap: only in processes that run pool or Dask tasks

    writer = ring.create()
    if writer is None:
        return
    try:
        sock = _sock or _connect()
        sock.sendmsg(
            [b'{"k":"ring"}\n'],
            [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", writer.fd))],
        )
    except OSError as exc:
        writer.close()
        if isinstance(exc, _GONE_ERRORS):  # else the records go over the socket, as before
            _drop()
            _unreachable(exc)
        return
    writer.give_fd()
    _ring = writer


def _send(line: bytes) -> bool:
    if _path is None or _gone:
        return False
    try:
        (_sock or _connect()).sendall(line)
        return True
    except OSError as exc:
        if _sock is None or not _fds.not_ours(exc):
            _drop()
            _unreachable(exc)
            return False
    # The program closed this process's connection (os.closerange): a new one, quietly.
    _drop(closed=True)
    try:
        _connect().sendall(line)
        return True
    except OSError as exc:
        _drop()
        _unreachable(exc)
        return False


def _unreachable(exc: OSError) -> None:
    """The collector could not be reached: said once per process; given up on for good when
    it is gone (``_GONE_ERRORS``), tried again with the next record when it only timed out."""
    global _warned, _gone
    _gone = isinstance(exc, _GONE_ERRORS)
    if not _warned:
        _warned = True
        sys.stderr.write(
            f"proctrace: pid {os.getpid()} cannot reach the trace collector "
            f"({exc.__class__.__name__}: {exc}); its spans are lost\n"
        )


def _drop(closed: bool = False) -> None:
    global _ring, _ring_tried
    if _ring is not None:  # the collector took what is in it; a new connection, a new ring
        _ring.close()
        _ring = None
    _ring_tried = False
    _close_socket(closed)


def _close_socket(closed: bool = False) -> None:
    """Close the connection; ``closed``: the program closed its descriptor already, and the
    number may be the program's own now (``_core.fds``): let go of it without closing."""
    global _sock
    if _sock is not None:
        try:
            _sock.detach() if closed else _sock.close()
        except OSError:  # pragma: no cover - closing a broken socket
            pass
        _sock = None


def close() -> None:
    """Close this process's connection; the collector reads it as this process's end."""
    with _lock:
        _drop()


def _after_fork_in_child() -> None:
    # The inherited socket belongs to the parent: close our copy (without
    # shutdown(), which would end the parent's stream too) and start afresh.
    global _warned, _defaults, _ring, _ring_tried, _gone
    _lock._at_fork_reinit()  # type: ignore[attr-defined]  # held by another thread?
    if _ring is not None:
        _ring = None  # the parent's to write: a child makes its own
        _ring_tried = False
    _warned = _gone = False  # a child tries once, and says so itself
    _defaults = None
    _close_socket()


os.register_at_fork(after_in_child=_after_fork_in_child)
