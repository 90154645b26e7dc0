"""The collector: reads every process's records from the run's socket and makes SDK spans.

Each process has one connection. A ``start`` record opens a span, an ``end``
record finishes it, a ``span`` record is a finished span in one piece. When a
connection ends with spans still open, the process ended without finishing
them (a signal, a crash, ``os._exit``): ``_fates`` decides how to end them,
from what the starter reported. Nothing here waits on the network: finished
spans go to ``sink``.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from . import _fates

BURST_PAUSE = 0.002


class _Connection:
    __slots__ = ("buffer", "defaults", "open")

    def __init__(self) -> None:
        self.buffer = b""
        self.open: dict[str, dict[str, Any]] = {}
        self.defaults: dict[str, Any] = {}


class Collector:
    """Serves one run's socket until told to stop (or its owner process is gone)."""

    def __init__(
        self,
        listener: socket.socket,
        sink: Callable[[dict[str, Any]], None],
        *,
        owner_pid: int | None = None,
        drain_timeout: float = 0.5,
        in_process: bool = False,
    ) -> None:
        self._listener = listener
        self._sink = sink
        self._owner_pid = owner_pid
        self._drain_timeout = drain_timeout
        self._stop_at: float | None = None
        self._fates = _fates.Fates(self._emit)
        self._waiters_lock = threading.Lock()
        self._waiters: dict[str, threading.Event | None] | None = {} if in_process else None
        self.delivered = 0
        self.malformed = 0
        self.trace_ids: dict[str, None] = {}

    def stop(self, after: float = 0.0) -> None:
        """Stop once every connection has ended, or ``after`` seconds from now at the latest."""
        deadline = time.monotonic() + after
        self._stop_at = deadline if self._stop_at is None else min(self._stop_at, deadline)

    def serve(self) -> None:
        selector = selectors.DefaultSelector()
        self._listener.setblocking(False)
        selector.register(self._listener, selectors.EVENT_READ)
        connections: dict[socket.socket, _Connection] = {}
        try:
            while True:
                ended: list[_Connection] = []
                ready = selector.select(timeout=0.05)
                for key, _ in ready:
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    if sock is self._listener:
                        self._accept(selector, connections)
                    elif not self._read(sock, connections[sock]):
                        selector.unregister(sock)
                        ended.append(connections.pop(sock))
                        sock.close()
                # Ends are handled after every ready connection was read: a starter's
                # report of why a child ended is sent before the child ends.
                for conn in ended:
                    for record in conn.open.values():
                        self._fates.lost(record)
                    conn.open.clear()
                if self._fates.waiting():
                    self._fates.tick(time.monotonic())
                if ready:
                    # While records flow, read them in bursts: a collector asleep in
                    # select() has to be woken by every single send, which costs each
                    # sender far more than the send itself.
                    time.sleep(BURST_PAUSE)
                if self._owner_pid is not None and os.getppid() != self._owner_pid:
                    self.stop(self._drain_timeout)  # the traced program is gone
                if self._stop_at is not None and (
                    not connections or time.monotonic() >= self._stop_at
                ):
                    break
        finally:
            for sock, conn in connections.items():
                # What is already buffered is local: read it all before giving up on
                # the processes that are still running.
                while self._read(sock, conn) and self._buffered(sock):
                    pass
                for record in conn.open.values():
                    self._fates.abandon(record)
                sock.close()
            self._fates.finish_all()
            selector.close()
            self._listener.close()

    def _accept(
        self, selector: selectors.BaseSelector, connections: dict[socket.socket, _Connection]
    ) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            connections[sock] = _Connection()

    @staticmethod
    def _buffered(sock: socket.socket) -> bool:
        try:
            return bool(sock.recv(1, socket.MSG_PEEK))
        except OSError:  # nothing waiting (EAGAIN) or gone
            return False

    def _read(self, sock: socket.socket, conn: _Connection) -> bool:
        """Handle what arrived; False when the peer has gone."""
        try:
            data = sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            data = b""
        if not data:
            return False
        *lines, conn.buffer = (conn.buffer + data).split(b"\n")
        for line in lines:
            self._handle(conn, line)
        return True

    def _handle(self, conn: _Connection, line: bytes) -> None:
        try:
            record = json.loads(line)
            kind = record["k"]
            span_id = record.get("span")
            if kind == "start":
                if self._fates.started(record):
                    conn.open[span_id] = record
            elif kind == "end":
                started = conn.open.pop(span_id)
                started["attrs"].update(record.get("attrs") or {})
                started.update(
                    end=record["end"],
                    status=record.get("status", 0),
                    message=record.get("message", ""),
                    events=record.get("events") or [],
                )
                if not self._fates.ended(started):
                    self._emit(started)
            elif kind == "span":
                if record.get("d"):
                    record["attrs"] = {**conn.defaults, **record.get("attrs", {})}
                self._emit(record)
            elif kind == "defaults":
                conn.defaults = dict(record["attrs"])
            elif kind == "expect":
                self._fates.expect(record)
            elif kind == "signal":
                self._fates.signalled(span_id, int(record["value"]))
            elif kind == "exited":
                self._fates.exited(span_id, int(record["value"]))
            elif kind == "shutdown":
                self.stop(self._drain_timeout)
            else:
                self.malformed += 1
        except (ValueError, KeyError, TypeError, AttributeError):
            self.malformed += 1

    def _emit(self, record: dict[str, Any]) -> None:
        """Hand a finished span record to the sink."""
        try:
            self.trace_ids.setdefault(record["trace"])
        except (KeyError, TypeError):
            self.malformed += 1
            return
        self.delivered += 1
        try:
            self._sink(record)
        except Exception:  # a failing sink must not stop the collection of the others
            pass
        if self._waiters is not None and "quiet_term" in record:  # a process span
            with self._waiters_lock:
                waiter = self._waiters.pop(record["span"], None)
                if waiter is None:
                    self._waiters[record["span"]] = None  # delivered before anyone asked
                else:
                    waiter.set()

    def wait_delivered(self, span_id: str, timeout: float) -> None:
        """Block until the process span ``span_id`` went to the sink (in-process collector).

        The application's own provider is in this process, and programs often shut it
        down right after ``join()``: the child's span must have reached it by then.
        """
        assert self._waiters is not None
        with self._waiters_lock:
            if span_id in self._waiters and self._waiters[span_id] is None:
                del self._waiters[span_id]
                return
            event = self._waiters[span_id] = threading.Event()
        if not event.wait(timeout):
            with self._waiters_lock:
                self._waiters.pop(span_id, None)
