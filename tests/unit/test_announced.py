"""Announced task spans (a Dask task's, issue #14): the start record and the span written
from templates say what the general records say, and the collector joins them: one span per
call, ended by its encoded span or by its ``end`` record, none left open."""

from __future__ import annotations

import json
import socket

import pytest

from proctrace._agent.collector import Collector, _Connection
from proctrace._child import announced
from proctrace._child import wire as _wire
from proctrace._core import names, records
from proctrace._core.ids import SpanRef
from proctrace._otlp import encoded, protobuf

TRACE, PARENT = "a1" * 16, "b2" * 8
ATTRS = {
    names.PID: 4242,
    names.PROCESS_NAME: "Dask Worker process (from Nanny)",
    names.FUNCTION: "__main__.work",
    "proctrace.dask.worker": "tcp://127.0.0.1:40000",
    "thread.id": 140000000000000,
    "thread.name": "0-Dask-Default-Threads-1-0",
}
OWN = ("proctrace.dask.key", "proctrace.dask.attempt")


@pytest.mark.parametrize(
    "value",
    ["inc-3f2a", "", "k" * 130, "é\u2603", "bad \udcff", 0, 1, 127, 128, 2**40, -1],
)
def test_a_calls_own_attributes_encode_as_any_attribute_does(value):
    expected = protobuf._attributes(b"\x4a", {OWN[0]: value, OWN[1]: 3})
    assert protobuf.OwnAttributes(OWN).encode((value, 3)) == expected


def work(x, token="", *, scale=1):
    if x == "fail":
        raise ValueError("no")
    return x


class _Sent:
    """What ``announced.run`` sends, caught instead of sent: start lines, encoded spans and
    the general path's end records."""

    def __init__(self, monkeypatch):
        self.lines: list[bytes] = []
        monkeypatch.setattr(announced, "_send_start", self._start)
        monkeypatch.setattr(announced, "_send_end", self._end)
        monkeypatch.setattr(_wire, "send", self._record)
        monkeypatch.setattr(_wire, "send_task", self._record)

    def _start(self, line):
        self.lines.append(line + b"\n")
        return False

    def _end(self, span, ring=True):
        assert ring is False  # its start went over the socket: so does its end
        self.lines.append(b"%s%s%s\n" % (records.ENCODED_START, span.hex().encode(),
                                          records.ENCODED_END))
        return True

    def _record(self, record):
        self.lines.append(_wire.encode(record))
        return False


def _collect(lines: list[bytes]) -> tuple[list[dict], _Connection, Collector]:
    emitted: list[dict] = []
    collector = Collector(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), emitted.append)
    conn = _Connection()
    a, b = socket.socketpair()
    try:
        a.sendall(b"".join(lines))
        a.close()
        while collector._read(b, conn):
            pass
    finally:
        b.close()
    return emitted, conn, collector


def _plan() -> announced.Plan:
    return announced.Plan(work, "work", SpanRef(TRACE, PARENT, True), ATTRS, OWN, True, 64, ())


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((3,), {}), (("x" * 100,), {"token": "s3cret", "scale": 2}), ((), {"x": "é"})],
)
def test_a_call_sends_its_start_then_its_span_and_the_collector_keeps_one(
    monkeypatch, args, kwargs
):
    sent = _Sent(monkeypatch)
    assert announced.run(_plan(), work, args, kwargs, "c3" * 8, ("inc-1", 1)) == (
        args[0] if args else kwargs["x"]
    )
    assert len(sent.lines) == 2
    start = records.parse(sent.lines[0][:-1])
    assert start["k"] == "start" and start["t"] is True and start["span"] == "c3" * 8
    emitted, conn, collector = _collect(sent.lines)
    assert collector.malformed == 0 and conn.open == {}
    assert len(emitted) == 1
    span = encoded.decode(emitted[0])
    # The span says what its start record said, and its CPU time.
    assert {k: v for k, v in span["attrs"].items() if k != names.TASK_CPU} == start["attrs"]
    assert start["attrs"]["proctrace.dask.key"] == "inc-1"
    assert start["attrs"]["proctrace.dask.attempt"] == 1
    if "token" in kwargs:
        assert "s3cret" not in json.dumps(start["attrs"])
        assert start["attrs"][names.KWARGS_PREFIX + "token"] == "[REDACTED]"
    assert span["name"] == "work" and span["parent"] == PARENT and span["trace"] == TRACE
    assert span["start"] == start["start"] <= span["end"]


def test_a_failed_call_ends_its_start_the_general_way_with_the_same_attributes(monkeypatch):
    sent = _Sent(monkeypatch)
    with pytest.raises(ValueError):
        announced.run(_plan(), work, ("fail",), {}, "d4" * 8, ("inc-2", 2))
    emitted, conn, collector = _collect(sent.lines)
    assert collector.malformed == 0 and conn.open == {}
    [span] = emitted
    assert span["status"] == names.STATUS_ERROR
    assert span["attrs"]["proctrace.dask.attempt"] == 2
    assert span["attrs"][names.ARGS] == ["'fail'"]
    assert names.TASK_CPU in span["attrs"]
    assert [e[0] for e in span["events"]] == ["exception"]


def test_a_start_without_its_end_stays_open_for_the_process_fate(monkeypatch):
    sent = _Sent(monkeypatch)
    announced.run(_plan(), work, (1,), {}, "e5" * 8, ("inc-3", 1))
    emitted, conn, _ = _collect(sent.lines[:1])
    assert emitted == [] and list(conn.open) == ["e5" * 8]
