"""The collector: reads every process's records from the run's socket and makes SDK spans.

Each process has one connection. A ``start`` record opens a span, an ``end``
record finishes it, a ``span`` record is a finished span in one piece. When a
connection ends with spans still open, the process ended without finishing
them (a signal, a crash, ``os._exit``): ``_fates`` decides how to end them,
from what the starter reported. Nothing here waits on the network: finished
spans go to ``sink``.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from .._core import records
from .._core.records import ENCODED_END, ENCODED_START, Finished, SpanData
from .._otlp import encoded as _encoded
from . import fates as _fates

BURST_PAUSE = 0.002
_ENCODED_HEX, _ENCODED_TAIL = len(ENCODED_START), len(ENCODED_END)
# The longest line a process may send (a record): a process span with 128 log events of
# the longest reprs is far below; more is dropped, so one bad peer cannot exhaust memory.
MAX_LINE = 16 << 20


class _Connection:
    __slots__ = ("buffer", "defaults", "open", "skipping")

    def __init__(self) -> None:
        self.buffer = b""
        self.open: dict[str, SpanData] = {}
        self.defaults: dict[str, Any] = {}
        self.skipping = False  # inside a line longer than MAX_LINE


class Collector:
    """Serves one run's socket until told to stop (or its owner process is gone)."""

    def __init__(
        self,
        listener: socket.socket,
        sink: Callable[[Finished], None],
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
        self._tick: Callable[[], object] | None = None
        self.malformed = 0
        self.trace_ids: dict[str, None] = {}

    def on_tick(self, tick: Callable[[], object]) -> None:
        """Call ``tick`` on every turn of the serving loop (at least every 50 ms)."""
        self._tick = tick

    def note_group_signal(self, signum: int) -> None:
        """The agent received ``signum`` with its process group: spans it ends say so."""
        if self._fates.group_signal is None:
            self._fates.group_signal = signum

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
                if self._tick is not None:
                    self._tick()
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
        if len(conn.buffer) > MAX_LINE:  # no record is this long: drop it, keep memory bounded
            conn.buffer = b""
            conn.skipping = True
            self.malformed += 1
        elif conn.skipping and lines:  # the end of the over-long line: not a record either
            lines = lines[1:]
            conn.skipping = False
        for line in lines:
            if line.startswith(ENCODED_START) and line.endswith(ENCODED_END):  # a pool task
                self._encoded(line[_ENCODED_HEX:-_ENCODED_TAIL])
            else:
                self._handle(conn, line)
        return True

    def _encoded(self, text: str | bytes) -> None:
        """An ``EncodedRecord``'s span, from its hex."""
        encoded = _encoded.check(text)
        if encoded is None:
            self.malformed += 1
        else:
            self._emit(encoded)

    def _handle(self, conn: _Connection, line: bytes) -> None:
        """One line from a connection: checked by the record protocol, then acted on."""
        try:
            record = records.parse(line)
        except records.RecordError:
            self.malformed += 1
            return
        if record["k"] == "start":
            data = _span_data(record)
            if record.get("p"):  # opened by its starter (fork): no announcement comes
                data["process"] = True
                data["quiet_term"] = bool(record.get("q"))
            # A task's span (``t``) has no process fate: ended at once, or lost with its
            # connection like a process span.
            if record.get("t") or self._fates.started(data):
                conn.open[record["span"]] = data
        elif record["k"] == "end":
            started = conn.open.pop(record["span"], None)
            if started is None:  # an end without its start on this connection
                self.malformed += 1
                return
            started["attrs"].update(record["attrs"])
            started["end"] = record["end"]
            started["status"] = record["status"]
            started["message"] = record["message"]
            started["events"] = record["events"]
            if not self._fates.ended(started):
                self._emit(started)
        elif record["k"] == "span":
            data = _span_data(record)
            if record.get("d"):
                data["attrs"] = {**conn.defaults, **record["attrs"]}
            self._emit(data)
        elif record["k"] == "pb":
            self._encoded(record["b"])
        elif record["k"] == "defaults":
            conn.defaults = dict(record["attrs"])
        elif record["k"] == "expect":
            self._fates.expect(record)
        elif record["k"] == "signal":
            self._fates.signalled(record["span"], record["value"], record.get("pid"))
        elif record["k"] == "pid":
            self._fates.forked(record["span"], record["value"])
        elif record["k"] == "exited":
            self._fates.exited(record["span"], record["value"], record.get("pid"))
        elif record["k"] == "shutdown":
            self.stop(self._drain_timeout)

    def _emit(self, record: Finished) -> None:
        """Hand a finished span record to the sink."""
        self.trace_ids.setdefault(record["trace"])
        self.delivered += 1
        try:
            self._sink(record)
        except Exception:  # a failing sink must not stop the collection of the others
            pass
        if self._waiters is not None and "process" in record and record["process"]:
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


def _span_data(record: records.StartRecord | records.SpanRecord) -> SpanData:
    """The collector's copy of a span from its ``start`` or ``span`` record."""
    data: SpanData = {
        "trace": record["trace"],
        "span": record["span"],
        "parent": record["parent"] or None,
        "name": record["name"],
        "start": record["start"],
        "attrs": record["attrs"],
    }
    if "links" in record:
        data["links"] = record["links"]
    if record["k"] == "span":
        data["end"] = record["end"]
        data["status"] = record["status"]
        data["message"] = record["message"]
        data["events"] = record["events"]
        for key in ("kind", "scope"):
            if key in record:
                data[key] = record[key]
    return data
