"""The agent's export pipeline: a trace file (a local destination) is waited for, never given
up on; a backend that cannot keep up has its spans kept, and written to the file too."""

from __future__ import annotations

import threading
import time
import types
from pathlib import Path

import pytest

from proctrace._agent import pipeline
from proctrace._core.records import SpanData
from proctrace._otlp import files


def spans(count: int, start: int = 0) -> list[SpanData]:
    return [
        {
            "trace": "a1" * 16,
            "span": f"{i + 1:016x}",
            "parent": None,
            "name": "t",
            "start": i,
            "end": i + 1,
            "status": 0,
            "message": "",
            "attrs": {"i": i},
            "events": [],
        }
        for i in range(start, start + count)
    ]


def in_file(path: str | None) -> list[int]:
    if path is None:
        return []
    return sorted(
        int(span["attributes"][0]["value"]["intValue"])
        for request in files.read(path)
        for resource in request["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    )


def trace_files(tmp_path: Path) -> tuple[files.TraceFile, files.TraceFile]:
    directory = files.DirectoryChoice(str(tmp_path / "traces"))
    return files.TraceFile(directory, "t.jsonl"), files.TraceFile(directory, "t-undelivered.jsonl")


class SlowFile(pipeline.FileExporter):
    """The trace file on a slow disk: each batch takes ``delay`` seconds more."""

    delay = 0.01

    def export(self, batch):  # type: ignore[no-untyped-def]
        time.sleep(self.delay)
        return super().export(batch)


def test_a_slow_trace_file_makes_the_collector_wait_and_takes_every_span(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "MAX_QUEUE", 2 * pipeline.BATCH)
    trace, fallback = trace_files(tmp_path)
    line = pipeline.Pipeline([SlowFile(trace, {})], fallback, {})
    most = 0
    for n in range(40):  # 40 ring turns of 256 spans, faster than the file takes them
        line.add_many(spans(256, 256 * n))
        most = max(most, len(line._queue))
    for record in spans(1000, 256 * 40):  # and one by one
        line.add(record)
        most = max(most, len(line._queue))
    line.shutdown(0.5)
    assert most <= pipeline.MAX_QUEUE + 256  # the collector waited: memory stays bounded
    assert line.kept == 0 and line.lost == 0 and fallback.path is None
    assert in_file(trace.path) == list(range(256 * 40 + 1000))


def test_a_trace_file_that_does_not_finish_at_exit_has_its_spans_counted_lost(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(pipeline, "LOCAL_DEADLINE", 0.2)
    release = threading.Event()

    class Stuck(pipeline.FileExporter):
        def export(self, batch):  # type: ignore[no-untyped-def]
            release.wait(10)
            return super().export(batch)

    trace, fallback = trace_files(tmp_path)
    line = pipeline.Pipeline([Stuck(trace, {})], fallback, {})
    line.add_many(spans(600))  # a batch in flight, and 88 queued
    time.sleep(0.1)
    started = time.monotonic()
    line.shutdown(0.1)
    assert time.monotonic() - started < 2
    assert line.lost == 600 and "not written within" in line.lost_why
    assert line.kept == 0
    release.set()


def test_spans_a_failing_backend_cannot_take_are_kept_and_still_written_to_the_file(tmp_path):
    """A real OTLP exporter to a port nobody listens on, next to the trace file: every span is
    in the trace file, and every one in the fallback file to send later."""
    settings = types.SimpleNamespace(
        endpoint="http://127.0.0.1:9/v1/traces", protocol="http/protobuf"
    )
    trace, fallback = trace_files(tmp_path)
    # Named in this order (OTEL_TRACES_EXPORTER=otlp,file): the file is still written first.
    exporters = [pipeline.OtlpExporter(settings, {}), pipeline.FileExporter(trace, {})]
    line = pipeline.Pipeline(exporters, fallback, {})
    for n in range(20):
        line.add_many(spans(256, 256 * n))
        time.sleep(0.01)
    line.shutdown(0.5)
    assert in_file(trace.path) == list(range(256 * 20))
    assert in_file(fallback.path) == list(range(256 * 20))
    assert line.kept == 256 * 20
    assert any("slower than the program" in e or "127.0.0.1" in e for e in line.errors)


@pytest.fixture(autouse=True)
def _no_leftover_threads():
    yield
    for thread in threading.enumerate():
        if thread.name == "proctrace-export":
            thread.join(3)
