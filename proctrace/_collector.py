"""The collector: reads every process's records from the run's socket and makes SDK spans.

Each process has one connection. A ``start`` record opens a span, an ``end``
record finishes it; when a connection ends with spans still open, the process
ended without finishing them (SIGKILL, a crash, ``os._exit``) and the
collector ends them itself, marked ERROR, at the time it noticed. Nothing here
waits on the network: finished spans go to ``sink``.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from . import __version__

ABNORMAL = "process ended before its span did (killed, crashed or os._exit)"
STILL_RUNNING = "process was still running when the traced program exited"
NEVER_RAN = "process ended before its target started"
SIGNALS = {
    15: "terminated by SIGTERM (Process.terminate())",
    9: "killed by SIGKILL (Process.kill())",
}
EXIT_GRACE = 0.25  # seconds a reaped child's records may lag behind its starter's report
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SCOPE = InstrumentationScope("proctrace", __version__)


def _attrs(raw: dict[str, Any] | None) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in (raw or {}).items()}


def to_span(record: dict[str, Any], resource: Resource) -> ReadableSpan:
    """An SDK ReadableSpan from a finished (``span``, or merged start+end) record."""
    trace_id = int(record["trace"], 16)
    parent = record.get("parent")
    code = StatusCode(int(record.get("status", 0)))
    scope_name = record.get("scope")
    return ReadableSpan(
        name=str(record["name"]),
        context=SpanContext(trace_id, int(record["span"], 16), False, _SAMPLED),
        parent=SpanContext(trace_id, int(parent, 16), True, _SAMPLED) if parent else None,
        resource=resource,
        attributes=_attrs(record.get("attrs")),
        events=[Event(n, _attrs(attrs), int(ts)) for n, ts, attrs in record.get("events", ())],
        links=[
            Link(SpanContext(int(t, 16), int(s, 16), True, _SAMPLED), _attrs(a))
            for t, s, a in record.get("links", ())
        ],
        kind=SpanKind(int(record.get("kind", 0))),
        status=Status(code, record.get("message") or None if code is StatusCode.ERROR else None),
        start_time=int(record["start"]),
        end_time=int(record["end"]),
        instrumentation_scope=(
            InstrumentationScope(scope_name) if scope_name and scope_name != "proctrace" else _SCOPE
        ),
    )


def _merge(started: dict[str, Any], announced: dict[str, Any]) -> None:
    """Fold the starter's announcement into the child's start record."""
    started["start"] = min(int(started["start"]), int(announced["start"]))
    started["attrs"] = {**announced.get("attrs", {}), **started.get("attrs", {})}
    started["quiet_term"] = announced.get("quiet_term", False)


class _Connection:
    __slots__ = ("buffer", "open")

    def __init__(self) -> None:
        self.buffer = b""
        self.open: dict[str, dict[str, Any]] = {}


class Collector:
    """Serves one run's socket until told to stop (or its owner process is gone)."""

    def __init__(
        self,
        listener: socket.socket,
        sink: Callable[[ReadableSpan], None],
        *,
        resource: Resource,
        owner_pid: int | None = None,
        drain_timeout: float = 0.5,
    ) -> None:
        self._listener = listener
        self._sink = sink
        self._resource = resource
        self._owner_pid = owner_pid
        self._drain_timeout = drain_timeout
        self._stop_at: float | None = None
        # Process spans announced by their starters whose child has not started them yet,
        # where each started span is open, and what starters reported about them.
        self._pending: dict[str, dict[str, Any]] = {}
        self._open_in: dict[str, _Connection] = {}
        self._signals: dict[str, int] = {}
        self._exits: dict[str, int] = {}
        # Process spans already ended, until their starter reports the exit: a starter's
        # announcement can arrive after a quick child has finished.
        self._done: set[str] = set()
        self._unstarted: dict[str, float] = {}  # reaped but not started: decide at deadline
        self.delivered = 0
        self.abnormal = 0
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
                for key, _ in selector.select(timeout=0.05):
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
                    self._close(conn)
                if self._unstarted:
                    self._expire(time.monotonic())
                if self._owner_pid is not None and os.getppid() != self._owner_pid:
                    self.stop(self._drain_timeout)  # the traced program is gone
                if self._stop_at is not None and (
                    not connections or time.monotonic() >= self._stop_at
                ):
                    break
        finally:
            for sock, conn in connections.items():
                self._close(conn, STILL_RUNNING)
                sock.close()
            self._expire(None)
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
                self._unstarted.pop(span_id, None)
                announced = self._pending.pop(span_id, None)
                if announced is not None:
                    _merge(record, announced)
                conn.open[span_id] = record
                self._open_in[span_id] = conn
            elif kind == "end":
                started = conn.open.pop(span_id)
                self._open_in.pop(span_id, None)
                self._signals.pop(span_id, None)
                self._exits.pop(span_id, None)
                self._done.add(span_id)
                started["attrs"].update(record.get("attrs") or {})
                started.update(
                    end=record["end"],
                    status=record.get("status", 0),
                    message=record.get("message", ""),
                    events=record.get("events") or [],
                )
                self._emit(started)
            elif kind == "expect":
                where = self._open_in.get(span_id)
                if where is not None:  # the child was quicker than its starter's note
                    _merge(where.open[span_id], record)
                elif span_id not in self._done:
                    self._pending[span_id] = record
            elif kind == "signal":
                self._signals[span_id] = int(record["value"])
            elif kind == "exited":
                self._exited(span_id, int(record["value"]))
            elif kind == "span":
                self._emit(record)
            elif kind == "shutdown":
                self.stop(self._drain_timeout)
            else:
                self.malformed += 1
        except (ValueError, KeyError, TypeError, AttributeError):
            self.malformed += 1

    def _exited(self, span_id: str, code: int) -> None:
        if span_id in self._pending:
            # The child's own records may still be on their way (another connection):
            # give them a moment before deciding it never ran.
            self._exits[span_id] = code
            self._unstarted[span_id] = time.monotonic() + EXIT_GRACE
        elif span_id in self._open_in:
            self._exits[span_id] = code  # its connection's end will say how it ended
        else:
            self._signals.pop(span_id, None)
            self._done.discard(span_id)

    def _expire(self, now: float | None) -> None:
        """End announced spans whose process was reaped without starting (all, if ``now`` is
        None: the run is over)."""
        candidates = self._pending if now is None else self._unstarted
        due = [s for s in list(candidates) if now is None or self._unstarted[s] <= now]
        for span_id in due:
            self._unstarted.pop(span_id, None)
            record = self._pending.pop(span_id, None)
            if record is not None:
                self._finish(record, time.time_ns(), NEVER_RAN, self._exits.pop(span_id, None))

    def _close(self, conn: _Connection, why: str = ABNORMAL) -> None:
        now = time.time_ns()
        for span_id, record in conn.open.items():
            self._open_in.pop(span_id, None)
            self._done.add(span_id)
            self._finish(record, now, why, self._exits.pop(span_id, None))
        conn.open.clear()

    def _finish(self, record: dict[str, Any], now: int, why: str, code: int | None) -> None:
        """End a span its process could not end: say how, from what the starter reported."""
        signum = self._signals.pop(record["span"], None)
        attrs = record.setdefault("attrs", {})
        status = StatusCode.ERROR.value
        if signum is not None:
            why = SIGNALS.get(signum, f"ended by signal {signum}")
            attrs["proctrace.terminated"] = True
            code = -signum
            if record.get("quiet_term"):  # a pool stopping its worker: not a failure
                status, why = StatusCode.UNSET.value, ""
        else:
            self.abnormal += 1
            attrs["proctrace.abnormal_end"] = True
        if code is not None:
            attrs["process.exit.code"] = code
        record.update(end=now, status=status, message=why)
        self._emit(record)

    def _emit(self, record: dict[str, Any]) -> None:
        try:
            span = to_span(record, self._resource)
        except (ValueError, KeyError, TypeError):
            self.malformed += 1
            return
        self.trace_ids.setdefault(record["trace"])
        self.delivered += 1
        try:
            self._sink(span)
        except Exception:  # a failing sink must not stop the collection of the others
            pass
