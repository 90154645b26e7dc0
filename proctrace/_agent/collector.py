"""The collector: reads every process's records from the run's socket and makes SDK spans.

Each process has one connection. A ``start`` record opens a span, an ``end``
record finishes it, a ``span`` record is a finished span in one piece. When a
connection ends with spans still open, the process ended without finishing
them (a signal, a crash, ``os._exit``): ``_fates`` decides how to end them,
from what the starter reported. Nothing here waits on the network: finished
spans go to ``sink``.
"""

from __future__ import annotations

import array
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence

from .._core import names, records
from .._core import ring as _fmt
from .._core.records import ENCODED_END, ENCODED_START, Finished, SpanData
from .._otlp import encoded as _encoded
from . import cutoff as _cutoff
from . import fates as _fates
from . import framing as _framing
from . import processes as _processes
from . import rings as _rings

_RING_SPAN, _RING_LINE = _fmt.SPAN, _fmt.LINE
_ENCODED_HEX, _ENCODED_TAIL = len(ENCODED_START), len(ENCODED_END)
MAX_LINE = _framing.MAX_LINE
# Room for the descriptors one read may bring (a ring's: one per process), and how many a
# connection may hold unclaimed by ring records before they are closed.
_ANCILLARY = socket.CMSG_SPACE(4 * 4)
_MAX_FDS = 4
_Connection = _framing.Connection


class Collector:
    """Serves one run's socket until told to stop (or its owner process is gone)."""

    def __init__(
        self,
        listener: socket.socket,
        sink: Callable[[Finished], None],
        *,
        sink_many: Callable[[Sequence[Finished]], None] | None = None,
        owner_pid: int | None = None,
        drain_timeout: float = 0.5,
        in_process: bool = False,
    ) -> None:
        self._listener, self._sink, self._sink_many = listener, sink, sink_many
        self._owner_pid, self._drain_timeout = owner_pid, drain_timeout
        self._stop_at: float | None = None
        self._fates = _fates.Fates(self._emit)
        self._waiters_lock = threading.Lock()
        self._waiters: dict[str, threading.Event | None] | None = {} if in_process else None
        self.delivered = self.malformed = 0
        self._tick: Callable[[], object] | None = None
        self.trace_ids: dict[str, None] = {}
        self._rings: dict[_Connection, None] = {}  # connections with a ring, in order
        self._connections: dict[socket.socket, _Connection] = {}
        self.shutdown_asked = False

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
        connections = self._connections
        pace = _rings.Pace()  # how long a turn waits at most while rings are open
        try:
            while True:
                ended: list[_Connection] = []
                ready = selector.select(timeout=pace.turn if self._rings else 0.05)
                for key, _ in ready:
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    if sock is self._listener:
                        self._accept(selector, connections)
                    elif not self._read(sock, connections[sock]):
                        selector.unregister(sock)
                        ended.append(connections.pop(sock))
                        sock.close()
                pace.took(sum([self._drain(conn) for conn in list(self._rings)]))
                # Ends are handled after every ready connection was read: a starter's
                # report of why a child ended is sent before the child ends. What a
                # process wrote into its ring is all read before its end is.
                for conn in ended:
                    self._end_of(conn)
                if self._tick is not None:
                    self._tick()
                if self._fates.waiting():
                    self._fates.tick(time.monotonic())
                if ready:  # while records flow, read them in bursts (rings.Pace.rest)
                    time.sleep(pace.rest(self.delivered, self._waiters is not None))
                if self._owner_pid is not None and os.getppid() != self._owner_pid:
                    self.stop(self._drain_timeout)  # the traced program is gone
                if self._stop_at is not None and (
                    not connections or time.monotonic() >= self._stop_at
                ):
                    break
        finally:
            for sock, conn in connections.items():
                while self._read(sock, conn) and self._buffered(sock):  # local: read it all
                    pass
                self._close_ring(conn, keep=True)  # what it published, read: then its task
                task = _cutoff.held(conn.ring, running=True)
                self._close_ring(conn, drained=True)
                if task:
                    self._fates.cut_off(task, _cutoff.process_of(conn.open), -1)
                for record in conn.open.values():
                    self._fates.abandon(record)
                sock.close()
            self._fates.finish_all()
            selector.close()
            self._listener.close()

    def _end_of(self, conn: _Connection) -> None:
        """A connection ended (its process did): its ring read to the end, its open spans and
        the task it ran ended as its starter reported, or as lost; unless it runs on."""
        task = _cutoff.held(conn.ring)  # the pool task it ran, if any
        self._close_ring(conn)
        pids = {r["attrs"].get(names.PID) for r in conn.open.values()} | {
            self._fates.pid_of(span) for span in conn.open
        }
        lives_on = next((p for p in pids if isinstance(p, int) and _processes.running(p)), None)
        if task is not None:
            self._fates.cut_off(task, _cutoff.process_of(conn.open), lives_on)
        for record in conn.open.values():
            self._fates.lost(record, lives_on)
        conn.open.clear()

    def _drain(self, conn: _Connection, final: bool = False) -> int:
        """Handle what ``conn``'s process published in its ring since the last turn; how many."""
        ring = conn.ring
        if ring is None:
            return 0
        records, refused = ring.take(final)
        self.malformed += refused
        spans: list[bytes] = []
        for kind, body in records:
            if kind == _RING_SPAN:
                spans.append(body)
                continue
            if spans:  # in their order with the lines between them
                self._encoded_many(spans, conn)
                spans = []
            if kind == _RING_LINE:
                self._handle(conn, body, from_ring=True)
            else:
                self.malformed += 1
        if spans:
            self._encoded_many(spans, conn)
        if ring.broken:
            self._close_ring(conn, drained=True)
        return len(records)

    def _close_ring(self, conn: _Connection, drained: bool = False, keep: bool = False) -> None:
        if conn.ring is not None:
            if not drained:
                self._drain(conn, final=True)
            if conn.ring is not None and not keep:
                conn.ring.close()
                conn.ring = None
            self._rings.pop(conn, None)
        conn.close_fds()

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
            data, ancillary, _, _ = sock.recvmsg(1 << 16, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            data, ancillary = b"", []
        for level, kind, payload in ancillary:  # a ring's descriptor, for its record
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                conn.fds.extend(fds)
                if len(conn.fds) > _MAX_FDS:  # more than any process sends: not kept
                    conn.close_fds()
        if not data:
            return False
        framing = conn.lines
        dropped = framing.dropped
        lines = framing.feed(data)
        self.malformed += framing.dropped - dropped  # lines no record is as long as
        for line in lines:
            if line.startswith(ENCODED_START) and line.endswith(ENCODED_END):  # a pool task
                self._encoded(line[_ENCODED_HEX:-_ENCODED_TAIL], conn)
            else:
                self._handle(conn, line)
        return True

    def _encoded(self, text: str | bytes, conn: _Connection) -> None:
        """An ``EncodedRecord``'s span, from its hex; the end of its start record, if any (an
        announced task's: its start may be in the ring still, where it went if it could)."""
        encoded = _encoded.check(text)
        if encoded is None:
            self.malformed += 1
            return
        if conn.open and encoded["span"] not in conn.open and conn.ring is not None:
            self._drain(conn)
        conn.open.pop(encoded["span"], None)
        self._emit(encoded)

    def _encoded_many(self, messages: list[bytes], conn: _Connection) -> None:
        """Spans from a ring, as the messages themselves, checked and handed on together; the
        start records they end are done with."""
        spans, refused = _encoded.check_many(messages)
        self.malformed += refused
        if not spans:
            return
        trace_ids, opened = self.trace_ids, conn.open
        for span in spans:
            trace_ids.setdefault(span["trace"])
            if opened:
                opened.pop(span["span"], None)
        self.delivered += len(spans)
        try:
            if self._sink_many is not None:
                self._sink_many(spans)
            else:
                for span in spans:
                    self._sink(span)
        except Exception:  # a failing sink must not stop the collection of the others
            pass

    def _handle(self, conn: _Connection, line: bytes, from_ring: bool = False) -> None:
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
            if started is None and conn.ring is not None and not from_ring:
                # Its start may be in the ring still: a task's start goes there, and its end
                # over the socket only when the ring had no room for it.
                self._drain(conn)
                started = conn.open.pop(record["span"], None)
            if started is None:  # its start on another connection of its process?
                started = self._reclaim(record["span"])
            if started is None:  # an end without its start
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
            self._encoded(record["b"], conn)
        elif record["k"] == "defaults":
            conn.defaults = dict(record["attrs"])
        elif record["k"] == "expect":
            self._fates.expect(record)
        elif record["k"] == "signal":
            self._fates.signalled(record["span"], record["value"], record.get("pid"))
        elif record["k"] == "pid":
            self._fates.forked(record["span"], record["value"])
        elif record["k"] == "exited":
            self._fates.exited(
                record["span"], record["value"], record.get("pid"), record.get("at")
            )
        elif record["k"] == "exec":
            self._fates.execed(record["span"], bool(record["value"]), record["value"] or None)
        elif record["k"] == "ring":
            self._ring(conn)
        elif record["k"] == "shutdown":
            self.shutdown_asked = True  # by the program, at its exit: it waits for the agent
            self.stop(self._drain_timeout)

    def _reclaim(self, span_id: str) -> SpanData | None:
        """The start of a span ended on another connection than the one it started on (the
        program closed its process's first connection): on a connection not read to its end
        yet, or held by the fates."""
        for conn in self._connections.values():
            if span_id in conn.open:
                return conn.open.pop(span_id)
        return self._fates.reclaim(span_id)

    def _ring(self, conn: _Connection) -> None:
        """A ``ring`` record: the descriptor that came with it is its process's ring."""
        if not conn.fds or conn.ring is not None:
            self.malformed += 1
            return
        try:
            conn.ring = _rings.Reader(conn.fds.pop(0))
        except _rings.RingError:
            self.malformed += 1
            return
        self._rings[conn] = None

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
