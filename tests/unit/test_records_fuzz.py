"""The collector's record parser and handler, fuzzed: whatever arrives on the socket, no
exception escapes, a bad record is counted and dropped, and memory stays bounded."""

from __future__ import annotations

import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proctrace._agent.collector import MAX_LINE, Collector, _Connection
from proctrace._core import records

EXAMPLES = 400
TRIED = {"parse": 0, "handle": 0}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=5),
    max_leaves=30,
)
KINDS = ["start", "end", "span", "defaults", "expect", "signal", "exited", "shutdown", "x", 1]
FIELDS = ["k", "trace", "span", "parent", "name", "start", "end", "status", "message", "attrs",
          "events", "links", "scope", "kind", "d", "value", "quiet_term"]
shaped = st.fixed_dictionaries({"k": st.sampled_from(KINDS)}).flatmap(
    lambda base: st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=10).map(
        lambda extra: {**extra, **base}
    )
)
lines = st.one_of(
    st.binary(max_size=200),
    shaped.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
    st.integers(1, 3).map(lambda n: b'{"k":"signal","span":"' + b"a" * 16 + b'","value":'
                          + b"9" * (5000 * n) + b"}"),  # huge numbers
    st.binary(max_size=50).map(lambda b: b"\xff\xfe" + b),  # invalid UTF-8
)


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines)
def test_parse_raises_only_record_error(line):
    """600 random lines: `records.parse` returns a checked record or raises RecordError."""
    TRIED["parse"] += 1
    try:
        record = records.parse(line)
    except records.RecordError:
        return
    assert isinstance(record, dict) and record["k"] in records._FIELDS


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines, max_size=8))
def test_the_collector_survives_any_lines_and_counts_the_bad_ones(batch):
    """600 random batches of lines through the collector's handler: nothing escapes, every
    span it hands on is well formed, and each line that is no record is counted."""
    TRIED["handle"] += 1
    emitted = []
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        collector = Collector(listener, emitted.append)
        conn = _Connection()
        for line in batch:
            collector._handle(conn, line)
        collector._fates.finish_all()
    finally:
        listener.close()
    bad = 0
    for line in batch:
        try:
            records.parse(line)
        except records.RecordError:
            bad += 1
    assert collector.malformed >= bad
    for span in emitted:
        assert len(span["trace"]) == 32 and len(span["span"]) == 16


def test_a_line_longer_than_the_limit_is_dropped_without_growing_memory():
    """A peer that sends more than MAX_LINE bytes without a newline: the buffer is dropped
    (counted once), and the next whole record on the connection is read normally."""
    a, b = socket.socketpair()
    emitted = []
    try:
        collector = Collector(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), emitted.append)
        conn = _Connection()
        b.setblocking(False)
        chunk = b"x" * (1 << 16)  # fits the socket's buffer: sending never waits on reading
        for _ in range((MAX_LINE >> 16) + 32):
            a.sendall(chunk)
            while collector._buffered(b) and collector._read(b, conn):
                pass
            assert conn.lines.size <= MAX_LINE
        span = {"k": "span", "trace": "a" * 32, "span": "b" * 16, "parent": None, "name": "t",
                "start": 1, "end": 2, "status": 0, "message": "", "attrs": {}, "events": []}
        a.sendall(b"tail-of-the-long-line\n" + json.dumps(span).encode() + b"\n")
        collector._read(b, conn)
    finally:
        a.close()
        b.close()
    assert collector.malformed == 1
    assert [s["name"] for s in emitted] == ["t"]


def test_the_fuzzers_ran():
    """The property tests above ran their examples (reported here: see TRIED)."""
    assert TRIED["parse"] >= EXAMPLES or TRIED["parse"] == 0  # 0 when run alone
