"""Export, in the agent process: batches of finished span records to their destinations.

Destinations are the embedded trace file (the default), OTLP over gRPC or
HTTP/protobuf (``_otlp.transport``, which reads the ``OTEL_EXPORTER_OTLP_*``
settings for headers, certificates, compression and timeout as the SDK's
exporters do), the console, or nothing. Records are encoded straight to OTLP (``_otlp``). A batch an
OTLP backend did not take is appended to a local file instead, so nothing is
dropped silently; at exit the pipeline gets a fixed time, and what is still
queued or in flight then goes to that file too. A destination on this machine (the
trace file) is waited for instead: the collector stops reading while it
is behind, and at exit it gets a few seconds more; what it still has not taken then is
counted and said lost.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from .._core import config as _config
from .._core.records import Finished
from .._otlp import encoded as _encoded
from .._otlp import files as _otlpjson

Record = Finished
BATCH = 512
INTERVAL = 0.2
EXPORT_TIMEOUT = 5.0
# Spans waiting for the backend beyond this go straight to the fallback file, so the
# agent's memory stays bounded whatever the backend does. While the backend is failing
# or slow (an export failed, or one has taken over SLOW seconds), the limit is small:
# what cannot be sent is moved to the file as it comes, and the exit stays quick.
MAX_QUEUE = 64 * BATCH
MAX_QUEUE_UNHEALTHY = 2 * BATCH
SLOW = 1.0
# The trace file, on this machine's disk, is never given up on: past MAX_QUEUE,
# the collector waits for them (its processes then wait on their full sockets, as they
# would on a slow disk without proctrace), and at exit they get LOCAL_DEADLINE more to
# finish before what is left is counted lost, and said (within the program's wait for its
# agent, _starter.run.AGENT_EXIT_TIMEOUT).
LOCAL = ("file",)
LOCAL_DEADLINE = 3.5


class _Exporter:
    name = ""

    def export(self, batch: Sequence[Record]) -> bool:
        raise NotImplementedError

    def warm(self) -> None:
        """Load what the first export needs (see ``Pipeline._run``)."""

    def shutdown(self) -> None:
        pass


class FileExporter(_Exporter):
    """Appends each batch as one OTLP/JSON line to the run's private trace file."""

    name = "file"

    def __init__(self, file: _otlpjson.TraceFile, resource: Mapping[str, Any]) -> None:
        self.file = file
        self.resource = resource

    def export(self, batch: Sequence[Record]) -> bool:
        return self.file.append(batch, self.resource)  # a failure is counted as lost there

    def shutdown(self) -> None:
        self.file.close()


class OtlpExporter(_Exporter):
    """OTLP over gRPC or HTTP/protobuf: records encoded straight to protobuf bytes, sent by
    the one transport (``proctrace send`` uses it too), with the ``OTEL_EXPORTER_OTLP_*``
    headers, certificates, compression and timeout."""

    name = "otlp"

    def __init__(self, settings: _config.Settings, resource: Mapping[str, Any]) -> None:
        import dataclasses

        from .._otlp import transport

        assert settings.endpoint is not None
        options = transport.options_from_env(settings.endpoint, settings.protocol, warn=_warn)
        if not any(os.environ.get(f"OTEL_EXPORTER_OTLP{k}_TIMEOUT") for k in ("_TRACES", "")):
            options = dataclasses.replace(options, timeout=EXPORT_TIMEOUT)
        self._transport = transport.Transport(options)
        self._resource = resource

    def warm(self) -> None:
        from .._otlp import protobuf  # noqa: F401

        self._transport.warm()

    def export(self, batch: Sequence[Record]) -> bool:
        """Send ``batch``; raises the transport's error (which says why) when it was not taken."""
        from .._otlp.protobuf import serialized_request

        self._transport.send(serialized_request(batch, self._resource))
        return True

    def shutdown(self) -> None:
        self._transport.close()


class ConsoleExporter(_Exporter):
    """The SDK's console exporter (one JSON document per span on stdout)."""

    name = "console"

    def __init__(self, resource: Mapping[str, Any]) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        self._resource = Resource(dict(resource))
        self._sdk = ConsoleSpanExporter()

    def export(self, batch: Sequence[Record]) -> bool:
        from .._otel.convert import to_span
        from .._otlp.encoded import expand

        self._sdk.export([to_span(r, self._resource) for r in expand(batch)])
        return True


def build(
    settings: _config.Settings, trace_file: _otlpjson.TraceFile, resource: Mapping[str, Any]
) -> list[_Exporter]:
    """The destinations ``settings`` name."""
    exporters: list[_Exporter] = []
    for name in settings.exporters:
        if name == "file":
            exporters.append(FileExporter(trace_file, resource))
        elif name == "otlp":
            exporters.append(OtlpExporter(settings, resource))
        elif name == "console":
            exporters.append(ConsoleExporter(resource))
    return exporters


class Pipeline:
    """A queue drained by one export thread; ``add`` never blocks on the network."""

    def __init__(
        self,
        exporters: list[_Exporter],
        fallback: _otlpjson.TraceFile,
        resource: Mapping[str, Any],
    ) -> None:
        # The trace file first: a batch is on disk before a backend may hold it up.
        self._exporters = sorted(exporters, key=lambda e: e.name not in LOCAL)
        self.fallback = fallback
        self._resource = resource
        self._queue: deque[Record] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._in_flight: Sequence[Record] = ()
        self._export_started = 0.0
        self._healthy = True
        self._local = [e for e in exporters if e.name in LOCAL]
        self._remote = len(self._local) < len(exporters)
        self.kept = 0  # spans written to the fallback file
        self.lost = 0  # spans a local destination did not take in time at exit
        self.lost_why = ""
        self._abandoned = False  # shutdown() took what the export thread still had
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="proctrace-export", daemon=True)
        self._thread.start()

    def add(self, record: Record) -> None:
        # deque.append is atomic: the lock is taken only to wake the export thread for a
        # full batch, or to move an overflow to the file, not for every span.
        queue = self._queue
        queue.append(record)
        size = len(queue)
        if size < BATCH:
            return
        overflow: list[Record] = []
        with self._wake:
            if size == BATCH or size % BATCH == 0:
                self._wake.notify_all()
            if not self._remote:
                self._wait_for_room()
            elif len(queue) > MAX_QUEUE or (
                len(queue) > MAX_QUEUE_UNHEALTHY and not self._is_healthy()
            ):
                overflow = self._take()
        if overflow:
            self._overflow(overflow)

    def add_many(self, records: Sequence[Record]) -> None:
        """``add()`` of each of ``records`` (the spans of a ring), the queue's size checked
        once for all of them."""
        queue = self._queue
        before = len(queue)
        queue.extend(records)
        after = len(queue)
        if after < BATCH:
            return
        overflow: list[Record] = []
        with self._wake:
            if before // BATCH != after // BATCH:
                self._wake.notify_all()
            if not self._remote:
                self._wait_for_room()
            else:
                while len(queue) > MAX_QUEUE or (
                    len(queue) > MAX_QUEUE_UNHEALTHY and not self._is_healthy()
                ):
                    overflow.extend(self._take())
        if overflow:
            self._overflow(overflow)

    def _wait_for_room(self) -> None:
        """With ``_wake`` held: wait while the trace file has more than MAX_QUEUE spans
        to write (the export thread wakes this at each batch it takes)."""
        while len(self._queue) > MAX_QUEUE and self._thread.is_alive():
            self._wake.wait(INTERVAL)

    def _overflow(self, batch: Sequence[Record]) -> None:
        """Spans the backend could not take in time: kept in the fallback file, and written
        to the local destinations now."""
        self._note("the backend is slower than the program")
        self._keep(batch)
        self._export_local(batch)

    def _export_local(self, batch: Sequence[Record]) -> None:
        for exporter in self._local:
            try:
                exporter.export(batch)
            except Exception as exc:  # pragma: no cover - an exporter bug: said at exit
                self._note(f"{exporter.name}: {_reason(exc)}")

    def _is_healthy(self) -> bool:
        stuck = bool(self._in_flight) and time.monotonic() - self._export_started > SLOW
        return self._healthy and not stuck

    def _take(self) -> list[Record]:
        count = min(BATCH, len(self._queue))
        return [self._queue.popleft() for _ in range(count)]

    def _run(self) -> None:
        # What the first export needs is loaded now, while the program starts its processes,
        # rather than with the first full batch, when its import would hold up the collector
        # (and the processes writing to it) for as long as it takes.
        for exporter in self._exporters:
            try:
                exporter.warm()
            except Exception:  # said by the first export
                pass
        _encoded.warm()
        while True:
            with self._wake:
                # A batch goes when it is full, or when INTERVAL has passed since this turn
                # began (at exit: at once). Taking whatever was queued when the last request
                # came back made a pool's stream go in batches of ~300 spans: each request
                # costs CPU here, in gRPC's threads and at the backend, on the program's cores.
                linger = time.monotonic() + INTERVAL
                while len(self._queue) < BATCH and not self._stopping:
                    left = linger - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
                batch = self._take()
                if batch:
                    self._wake.notify_all()  # a collector waiting for room (local only)
                self._in_flight = batch
                self._export_started = time.monotonic()
                if not batch and self._stopping:
                    return
            if batch:
                self._export(batch)
            with self._wake:
                self._in_flight = ()

    def _export(self, batch: Sequence[Record]) -> None:
        healthy = True
        for exporter in self._exporters:
            try:
                ok = exporter.export(batch)
            except Exception as exc:  # a refusal, or an exporter bug: the batch is kept
                ok = False
                self._note(f"{exporter.name}: {_reason(exc)}")
            if not ok and exporter.name != "file":
                healthy = False
                with self._wake:
                    if self._abandoned:  # shutdown() has kept it already
                        return
                    self._keep(batch)
        self._healthy = healthy and time.monotonic() - self._export_started <= SLOW

    def _note(self, error: str) -> None:
        if error not in self.errors:
            self.errors.append(error)

    def _keep(self, batch: Sequence[Record]) -> None:
        if self.fallback.append(batch, self._resource):
            self.kept += len(batch)

    def shutdown(self, timeout: float) -> None:
        """Export what is queued within ``timeout`` seconds; keep the rest in the fallback file."""
        deadline = time.monotonic() + timeout
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive() and not self._remote:
            # The trace file: slower than the program, but it takes them.
            self._thread.join(LOCAL_DEADLINE)
        if self._thread.is_alive():
            with self._wake:
                self._abandoned = True
                queued = list(self._queue)
                left = list(self._in_flight) + queued
                self._queue.clear()
            if self._remote:
                self._note(f"export did not finish within {timeout:g} s")
                self._keep(left)
                self._export_local(queued)  # the batch in flight went to them first
            else:
                self.lost += len(left)
                self.lost_why = f"not written within {timeout + LOCAL_DEADLINE:g} s of the exit"
            return
        for exporter in self._exporters:
            try:
                exporter.shutdown()
            except Exception:  # pragma: no cover - best effort at exit
                pass


def _reason(exc: BaseException) -> str:
    from .._otlp.transport import TransportError

    return str(exc) if isinstance(exc, TransportError) else f"{type(exc).__name__}: {exc}"


def _warn(line: str) -> None:
    """An ``OTEL_EXPORTER_OTLP_*`` value the transport cannot use: one line, and it carries on."""
    import sys

    sys.stderr.write(f"proctrace: {line}\n")


def relative(path: str) -> str:
    """``path`` relative to the working directory when it is below it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel
