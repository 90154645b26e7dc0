"""The readers of `proctrace view` and `proctrace send` cannot be made to crash or hang.

Property-based (Hypothesis): random bytes, JSON of any shape, OTLP requests with fields of
the wrong type, cut and corrupted trace files. Whatever the input, no exception escapes: the
view's reader drops what it cannot use and says so per file, `send` sends the rest or says
nothing could be read. Memory stays bounded: a record (a line, or one pretty-printed request)
longer than ``MAX_RECORD`` (32 MiB) is refused with a message, never held whole.
"""

from __future__ import annotations

import json
import string
import tempfile
import tracemalloc
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proctrace._cli import send as _send
from proctrace._core import config as _config
from proctrace._otlp import files
from proctrace._view import html, reading, spans, text

from .test_view_model import make_run

WORK = Path(tempfile.mkdtemp(prefix="proctrace-fuzz-"))
FAST = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
GOOD = make_run(tasks=8, errors=(3,))


def _file(data: bytes) -> str:
    path = WORK / "input.jsonl"
    path.write_bytes(data)
    return str(path)


def _view(path: str) -> tuple[reading.Reading, list[str]]:
    """Everything `proctrace view` does with a file, text and page both."""
    run = reading.Reading().add([path])
    roots = spans.trees(run.spans.values())
    lines = list(text.render(roots)) + list(text.render(roots, expand_all=True))
    html.page(roots, "fuzz")
    return run, lines


class _Sent(list):
    """A transport that keeps what it is given."""

    def __init__(self, options) -> None:
        super().__init__()

    def send(self, message: bytes) -> None:
        self.append(message)

    def close(self) -> None:
        pass


def _send_file(path: str) -> int | str:
    settings_ = _config.resolve(endpoint="http://127.0.0.1:9", protocol="http/protobuf",
                                exporter="otlp", env={})
    with mock.patch.object(_send.transport, "Transport", _Sent):
        try:
            sent, _ = _send.send_file(path, settings_)
        except _send.Unreadable as exc:
            return str(exc)
    return sent


def _everything(data: bytes) -> None:
    path = _file(data)
    problems: list[tuple[int, str]] = []
    for line, request in files.read_lines(path, lambda n, why: problems.append((n, why))):
        assert line >= 1 and isinstance(request.get("resourceSpans"), list)
    assert all(n >= 1 and why for n, why in problems)
    run, _ = _view(path)
    assert all(note.startswith(path) for note in run.notes)
    _send_file(_file(data))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=30,
)
ANY = st.one_of(JSON, st.integers(min_value=-(2**80), max_value=2**80).map(str),
                st.sampled_from(["", "NaN", "Infinity", "1e999", "-1", "STATUS_CODE_ERROR",
                                 "SPAN_KIND_SERVER", "AAECAwQFBgc=", "0" * 16, "g" * 32]))
VALUE = st.recursive(
    st.fixed_dictionaries({}, optional={
        "stringValue": ANY, "intValue": ANY, "doubleValue": ANY, "boolValue": ANY,
        "bytesValue": ANY}),
    lambda inner: st.fixed_dictionaries({"arrayValue": st.fixed_dictionaries(
        {"values": st.lists(inner, max_size=3)})}) | st.fixed_dictionaries(
        {"kvlistValue": st.fixed_dictionaries({"values": st.lists(st.fixed_dictionaries(
            {"key": ANY, "value": inner}), max_size=3)})}),
    max_leaves=10,
)
SPAN = st.fixed_dictionaries({}, optional={
    "traceId": ANY, "spanId": ANY, "parentSpanId": ANY, "name": ANY, "kind": ANY,
    "startTimeUnixNano": ANY, "endTimeUnixNano": ANY,
    "status": st.fixed_dictionaries({}, optional={"code": ANY, "message": ANY}) | ANY,
    "attributes": st.lists(st.fixed_dictionaries({"key": ANY, "value": VALUE}), max_size=4)
    | ANY,
    "events": st.lists(st.fixed_dictionaries({}, optional={
        "name": ANY, "timeUnixNano": ANY, "attributes": ANY}), max_size=2) | ANY,
    "links": ANY,
})
REQUEST = st.fixed_dictionaries({"resourceSpans": st.lists(st.fixed_dictionaries({}, optional={
    "resource": st.fixed_dictionaries({"attributes": ANY}) | ANY,
    "scopeSpans": st.lists(st.fixed_dictionaries({"spans": st.lists(SPAN | ANY, max_size=4)})
                           | ANY, max_size=2) | ANY,
}), max_size=2) | ANY})


@settings(FAST, max_examples=600)
@given(st.binary(max_size=3000))
def test_random_bytes(data):
    """1,000 inputs of random bytes (with NULs, invalid UTF-8, lone newlines): no exception."""
    _everything(data)


@pytest.mark.slow
@settings(FAST, max_examples=300)
@given(st.lists(JSON, max_size=4), st.booleans())
def test_json_of_any_shape(values, pretty):
    """500 files of JSON values of any shape (lists, numbers, strings, objects without
    resourceSpans), one per line or pretty-printed over many lines: no exception, each
    reported."""
    lines = [json.dumps(v, indent=2 if pretty else None) for v in values]
    _everything("\n".join(lines).encode())


@pytest.mark.slow
@settings(FAST, max_examples=400)
@given(st.lists(REQUEST, min_size=1, max_size=3), st.booleans())
def test_requests_with_fields_of_the_wrong_type(requests, pretty):
    """600 OTLP export requests whose every field may be missing or of another type (ids,
    times as huge numbers or words, enum names, NaN, nested values, statuses): a bad span is
    counted and dropped, the rest shown; `send` sends or says why not."""
    body = "\n".join(json.dumps(r, indent=1 if pretty else None) for r in requests)
    _everything(body.encode())


@pytest.mark.slow
@settings(FAST, max_examples=400)
@given(st.data())
def test_cut_and_corrupted_trace_files(data):
    """600 real trace files cut anywhere, with bytes changed or newlines put in: the good
    lines are read, each bad one reported with its line number."""
    good = "".join(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": GOOD[i:i + 3]}]}]})
                   + "\n" for i in range(0, len(GOOD), 3)).encode()
    cut = data.draw(st.integers(0, len(good)))
    body = bytearray(good[:cut])
    for _ in range(data.draw(st.integers(0, 3))):
        if body:
            at = data.draw(st.integers(0, len(body) - 1))
            body[at] = data.draw(st.sampled_from(b'\n{}[]",:\xff\x00' + string.digits.encode()))
    _everything(bytes(body))


def test_deep_nesting_huge_numbers_and_long_lines_are_refused_with_a_message():
    """100,000 nested brackets, a number of 5,000 digits, a time of 1e400, an attribute nested
    500 deep, and a 50 MB line: each one line of report; the 50 MB line is never held whole
    (the reader's peak memory stays near MAX_RECORD, 32 MiB); the good line after it is read."""
    deep_value: dict = {"stringValue": "leaf"}
    for _ in range(120):
        deep_value = {"kvlistValue": {"values": [{"key": "k", "value": deep_value}]}}
    span = {"traceId": "a" * 32, "spanId": "b" * 16, "startTimeUnixNano": "1",
            "attributes": [{"key": "deep", "value": deep_value}]}
    good = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
    cases = {
        b"[" * 100_000: "JSON nested too deeply to read",
        b'{"resourceSpans": [' + b"9" * 5000 + b"]}": "a number of too many digits",
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "aa", "spanId": "bb",'
        b' "startTimeUnixNano": 1e400}]}]}]}': "startTimeUnixNano is not a time",
    }
    for data, problem in cases.items():
        run, _ = _view(_file(data + b"\n" + good.encode() + b"\n"))
        assert len(run.notes) == 1 and problem in run.notes[0], run.notes
        assert len(run.spans) == 1
    path = WORK / "long.jsonl"
    with open(path, "wb") as out:
        out.write(b'{"resourceSpans": ["' + b"x" * (50 << 20) + b'"]}\n' + good.encode() + b"\n")
    tracemalloc.start()
    try:
        run = reading.Reading().add([str(path)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert run.notes == [f"{path}: line 1: longer than 32 MiB: skipped"]
    assert len(run.spans) == 1 and peak < files.MAX_RECORD + (8 << 20), peak
    assert "longer than 32 MiB" in str(_send_file(str(path)))


def test_send_reports_bad_lines_sends_the_rest_and_keeps_the_file(capsys):
    """`proctrace send` on a file with one good request, one line of garbage and one request
    protobuf refuses: the good one is sent, each bad line said with its number, the file
    kept; a file with nothing readable raises Unreadable and sends nothing."""
    good = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": GOOD[:2]}]}]})
    refused = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]})
    path = _file(f"{good}\nnot json\n{refused}\n".encode())
    assert _send_file(path) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"proctrace: {path}: line 2: not JSON (Expecting value at column 1)"
    assert err[1].startswith(f"proctrace: {path}: line 3: not an OTLP export request (")
    assert err[2] == f"proctrace: {path} is kept: 2 lines could not be sent"
    assert Path(path).exists()
    assert _send_file(_file(b"\x00\x01")) == "nothing in it could be read: line 1: binary data," \
                                            " not OTLP JSON"
