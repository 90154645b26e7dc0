"""Export: batches of finished spans go to the configured destinations, in the agent process.

Destinations are the embedded trace file (the default), OTLP over gRPC or
HTTP/protobuf, the console, or nothing. A batch an OTLP backend did not take is
appended to a local trace file instead, so nothing is dropped silently; at
exit the pipeline gets a fixed time, and what is still queued then goes to that
file too.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from . import _config, _otlpjson

BATCH = 512
INTERVAL = 0.2
EXPORT_TIMEOUT = 5.0
# Spans waiting for a slow or dead backend beyond this go straight to the fallback file,
# so the agent's memory stays bounded whatever the backend does.
MAX_QUEUE = 8 * BATCH


class FileExporter(SpanExporter):
    """Appends each batch as one OTLP JSON line to a private trace file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            _otlpjson.append(self.path, spans)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _otlp(settings: _config.Settings) -> SpanExporter:
    assert settings.endpoint is not None
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(
            endpoint=settings.endpoint,
            insecure=settings.endpoint.startswith("http://"),
            timeout=EXPORT_TIMEOUT,
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter(endpoint=settings.endpoint, timeout=EXPORT_TIMEOUT)


def build(settings: _config.Settings, trace_file: str) -> list[tuple[str, SpanExporter]]:
    """The destinations ``settings`` name, as ``(name, exporter)`` pairs."""
    exporters: list[tuple[str, SpanExporter]] = []
    for name in settings.exporters:
        if name == "file":
            exporters.append((name, FileExporter(trace_file)))
        elif name == "otlp":
            exporters.append((name, _otlp(settings)))
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append((name, ConsoleSpanExporter()))
    return exporters


class Pipeline:
    """A queue drained by one export thread; ``add`` never blocks."""

    def __init__(self, exporters: list[tuple[str, SpanExporter]], fallback_path: str) -> None:
        self._exporters = exporters
        self.fallback_path = fallback_path
        self._queue: deque[ReadableSpan] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._in_flight: Sequence[ReadableSpan] = ()
        self.exported = 0
        self.kept = 0  # spans written to the fallback file
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="proctrace-export", daemon=True)
        self._thread.start()

    def add(self, span: ReadableSpan) -> None:
        overflow: list[ReadableSpan] = []
        with self._wake:
            self._queue.append(span)
            if len(self._queue) >= BATCH:
                self._wake.notify()
            if len(self._queue) > MAX_QUEUE:
                overflow = self._take()
        if overflow:
            self._note("the backend is slower than the program")
            self._keep(overflow)

    def _take(self) -> list[ReadableSpan]:
        count = min(BATCH, len(self._queue))
        return [self._queue.popleft() for _ in range(count)]

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._queue and not self._stopping:
                    self._wake.wait(INTERVAL)
                batch = self._take()
                self._in_flight = batch
                if not batch and self._stopping:
                    return
            if batch:
                self._export(batch)
            with self._wake:
                self._in_flight = ()

    def _export(self, batch: Sequence[ReadableSpan]) -> None:
        for name, exporter in self._exporters:
            try:
                ok = exporter.export(batch) is SpanExportResult.SUCCESS
            except Exception as exc:  # an exporter bug must not lose the batch
                ok = False
                self._note(f"{name}: {type(exc).__name__}: {exc}")
            if ok:
                if name != "console":
                    self.exported += len(batch)
            elif name != "file":
                self._note(f"{name} exporter failed")
                self._keep(batch)

    def _note(self, error: str) -> None:
        if error not in self.errors:
            self.errors.append(error)

    def _keep(self, batch: Sequence[ReadableSpan]) -> None:
        try:
            _otlpjson.append(self.fallback_path, batch)
            self.kept += len(batch)
        except OSError as exc:
            self._note(f"cannot write {self.fallback_path}: {exc}")

    def shutdown(self, timeout: float) -> None:
        """Export what is queued within ``timeout`` seconds; keep the rest in the fallback file."""
        deadline = time.monotonic() + timeout
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            with self._wake:
                left = list(self._in_flight) + list(self._queue)
                self._queue.clear()
            if any(name not in ("console", "file") for name, _ in self._exporters):
                self._note(f"export did not finish within {timeout:g} s")
                self._keep(left)
        for _, exporter in self._exporters:
            if not self._thread.is_alive():
                try:
                    exporter.shutdown()
                except Exception:  # pragma: no cover - best effort at exit
                    pass


def relative(path: str) -> str:
    """``path`` relative to the working directory when it is below it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel
