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
                for key, _ in selector.select(timeout=0.05):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    if sock is self._listener:
                        self._accept(selector, connections)
                    else:
                        self._read(sock, connections[sock], selector, connections)
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

    def _read(
        self,
        sock: socket.socket,
        conn: _Connection,
        selector: selectors.BaseSelector,
        connections: dict[socket.socket, _Connection],
    ) -> None:
        try:
            data = sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            selector.unregister(sock)
            del connections[sock]
            sock.close()
            self._close(conn, ABNORMAL)
            return
        *lines, conn.buffer = (conn.buffer + data).split(b"\n")
        for line in lines:
            self._handle(conn, line)

    def _handle(self, conn: _Connection, line: bytes) -> None:
        try:
            record = json.loads(line)
            kind = record["k"]
            if kind == "start":
                conn.open[record["span"]] = record
            elif kind == "end":
                started = conn.open.pop(record["span"])
                started["attrs"].update(record.get("attrs") or {})
                started.update(
                    end=record["end"],
                    status=record.get("status", 0),
                    message=record.get("message", ""),
                    events=record.get("events") or [],
                )
                self._emit(started)
            elif kind == "span":
                self._emit(record)
            elif kind == "shutdown":
                self.stop(self._drain_timeout)
            else:
                self.malformed += 1
        except (ValueError, KeyError, TypeError, AttributeError):
            self.malformed += 1

    def _close(self, conn: _Connection, why: str) -> None:
        now = time.time_ns()
        for record in conn.open.values():
            self.abnormal += 1
            record["attrs"]["proctrace.abnormal_end"] = True
            record.update(end=now, status=StatusCode.ERROR.value, message=why)
            self._emit(record)
        conn.open.clear()

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
