"""Pool task spans encoded in the worker (issue #12): the bytes are the ones the agent writes
for the same record, the agent's check refuses what is not a span, and the destinations that
need the record get it back whole."""

from __future__ import annotations

import struct

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from proctrace._core import names, records
from proctrace._otlp import encoded, otlpjson, protobuf

PROCESS = {
    names.PID: 4242,
    names.PARENT_PID: 4241,
    names.PROCESS_NAME: "ForkPoolWorker-1",
    names.START_METHOD: "fork",
    names.STARTER_PID: 4241,
    names.FUNCTION: "__main__.work",
}
TRACE, PARENT, SPAN = "a1" * 16, "b2" * 8, "c3" * 8


def record(args: list[str] | None, kwargs: dict[str, str], cpu: float) -> records.SpanData:
    attrs = dict(PROCESS)
    if args is not None:
        attrs[names.ARGS] = args
    for key, value in kwargs.items():
        attrs[names.KWARGS_PREFIX + key] = value
    attrs[names.TASK_CPU] = cpu
    return {
        "trace": TRACE,
        "span": SPAN,
        "parent": PARENT,
        "name": "work",
        "start": 10**18,
        "end": 10**18 + 5000,
        "status": 0,
        "message": "",
        "attrs": attrs,
        "events": [],
    }


CASES = [
    (["1"], {}, 1.5e-05),
    ([], {}, 0.0),
    (None, {}, 2.0),
    (["'x' * 3", "[REDACTED]", "é\udcff"], {"token": "[REDACTED]", "n": "3"}, 0.25),
    (["a" * 300], {"k": "b" * 200}, 1e-06),
]


@pytest.mark.parametrize(("args", "kwargs", "cpu"), CASES)
def test_a_task_span_encodes_to_the_bytes_the_agent_writes_for_its_record(args, kwargs, cpu):
    spans = protobuf.TaskSpans(TRACE, PARENT, "work", PROCESS)
    data = spans.encode(SPAN, 10**18, 10**18 + 5000, args, kwargs, cpu)
    assert data == protobuf._span(record(args, kwargs, cpu))


@pytest.mark.parametrize(("args", "kwargs", "cpu"), CASES)
def test_the_agent_checks_an_encoded_span_and_decodes_it_back_to_its_record(args, kwargs, cpu):
    data = protobuf.TaskSpans(TRACE, PARENT, "work", PROCESS).encode(
        SPAN, 10**18, 10**18 + 5000, args, kwargs, cpu
    )
    checked = encoded.check(data.hex())
    assert checked == {"trace": TRACE, "span": SPAN, "encoded": data}
    back = encoded.decode(checked)
    expected = record(args, kwargs, cpu)
    if args is not None and any("\udcff" in a for a in args):  # OTLP strings are UTF-8
        expected["attrs"][names.ARGS] = [a.replace("\udcff", "?") for a in args]
    assert back == expected
    # The trace file holds the same span whichever way it came.
    assert otlpjson.dumps([back], {}) == otlpjson.dumps([expected], {})


def _span_bytes(**fields: object) -> bytes:
    return Span(**fields).SerializeToString()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "zz",
        "0a10",  # a trace id field cut short
        "ff" * 40,  # not protobuf
        _span_bytes(span_id=b"\1" * 8, name="n").hex(),  # no trace id
        _span_bytes(trace_id=b"\0" * 16, span_id=b"\1" * 8, name="n").hex(),  # the zero trace
        _span_bytes(trace_id=b"\1" * 16, span_id=b"\1" * 4, name="n").hex(),  # a short span id
        _span_bytes(trace_id=b"\1" * 16, span_id=b"\1" * 8).hex(),  # no name
        _span_bytes(
            trace_id=b"\1" * 16, span_id=b"\1" * 8, parent_span_id=b"\1" * 3, name="n"
        ).hex(),
    ],
)
def test_what_is_not_a_whole_span_is_refused(text):
    assert encoded.check(text) is None


def test_the_record_protocol_knows_the_encoded_record():
    line = b'{"k":"pb","b":"0a10"}'
    assert records.parse(line) == {"k": "pb", "b": "0a10"}
    with pytest.raises(records.RecordError):
        records.parse(b'{"k":"pb","b":7}')


def test_an_export_request_mixes_encoded_spans_and_records():
    data = protobuf.TaskSpans(TRACE, PARENT, "work", PROCESS).encode(
        SPAN, 10**18, 10**18 + 5000, ["1"], {}, 0.5
    )
    checked = encoded.check(data.hex())
    assert checked is not None
    mixed = protobuf.serialized_request([checked, record(["1"], {}, 0.5)], {"service.name": "s"})
    plain = protobuf.serialized_request(
        [record(["1"], {}, 0.5), record(["1"], {}, 0.5)], {"service.name": "s"}
    )
    assert mixed == plain


def test_spans_from_a_ring_are_checked_together_as_each_would_be_alone(monkeypatch):
    """``check_many`` (a ring's spans) gives what ``check_bytes`` gives each: the spans
    TaskSpans writes read from their bytes, any other layout parsed whole, and anything
    that is not a span (or has the zero trace id) refused, the rest kept."""
    good = [
        protobuf.TaskSpans(TRACE, PARENT, "work", PROCESS).encode(
            f"{i + 1:016x}", 10**18, 10**18 + 5, [str(i)], {}, 0.5
        )
        for i in range(50)
    ]
    other = _span_bytes(trace_id=b"\1" * 16, span_id=b"\2" * 8, name="n")  # no parent
    zero = bytes.fromhex(good[0].hex().replace("a1" * 16, "00" * 16))
    for batch in ([*good, other], [*good, other, b"\xff" * 40, zero]):
        spans, refused = encoded.check_many(batch)
        alone = [s for s in map(encoded.check_bytes, batch) if s is not None]
        assert spans == alone
        assert refused == len(batch) - len(alone)
    assert spans[0] == {"trace": TRACE, "span": f"{1:016x}", "encoded": good[0]}
    assert encoded.check_many([]) == ([], 0)
    # The spans TaskSpans writes are read from their bytes, not parsed one by one.
    whole = []
    monkeypatch.setattr(encoded, "check_bytes", lambda data: whole.append(data))
    spans, refused = encoded.check_many(good)
    assert (len(spans), refused, whole) == (len(good), 0, [])


def _reference_line(spans: list[records.Finished], resource: dict[str, object]) -> bytes:
    """The trace file's line as it was written before spans were read from their bytes: each
    encoded span decoded to its record, the request dumped whole by ``json``."""
    import json

    request = otlpjson.request(encoded.expand(spans), resource)
    return (json.dumps(request, separators=(",", ":"), allow_nan=False) + "\n").encode()


def _checked(data: bytes) -> records.EncodedSpan:
    span = encoded.check_bytes(data)
    assert span is not None
    return span


def _general_spans() -> list[bytes]:
    """Encoded spans laid out otherwise than TaskSpans lays them out, each with something the
    byte reader leaves to the general path or reads its own way."""
    base = record(["1"], {}, 0.5)
    out = []
    for change in (
        {"status": 2, "message": "ValueError: x\u00e9"},
        {"status": 2, "message": ""},
        {"status": 0, "message": "ignored without a code"},
        {"events": [("exception", 10**18 + 1, {"exception.type": "E", "n": [1, 2]})]},
        {"links": [("d4" * 16, "e5" * 8, {"why": "retry"})]},
        {"parent": None},
        {"kind": 2},
        {"name": "n" * 200},  # a two-byte length
        {
            "attrs": {
                "map": {"a": 1, "b": [True, 2.5]},
                "raw": b"\x00\xff",
                "big": 2**70,
                "nan": float("nan"),
                "inf": float("-inf"),
                "zero": -0.0,
                "t": True,
                "f": False,
                "empty": [],
                "long": "x" * 5000,
                "é": 'ü\u2028"\\',
            }
        },
        {"attrs": {names.ARGS: ["a" * 130, "b"], names.TASK_CPU: 1e300}},
    ):
        out.append(protobuf._span({**base, **change}))  # type: ignore[typeddict-item]
    # Bytes no writer of ours makes: a repeated key, a trace state, fields out of order.
    kv = protobuf._ld(b"\x4a", protobuf._kv("k", "one"))
    out.append(protobuf._span(base) + kv + protobuf._ld(b"\x4a", protobuf._kv("k", "two")))
    out.append(protobuf._span(base) + protobuf._ld(b"\x1a", b"vendor=1"))
    out.append(kv + protobuf._span(base))
    return out


def test_the_trace_file_line_of_encoded_spans_is_the_one_their_records_make():
    """``otlpjson.dumps`` reads encoded spans from their bytes (TaskSpans' layout in one go,
    the attributes a process's spans share known by their bytes): the line is byte for byte
    the one their decoded records make, for every layout and value, in any mix."""
    task_spans = [
        protobuf.TaskSpans(TRACE, PARENT, "work", PROCESS).encode(
            f"{i + 1:016x}", 10**18 + i, 10**18 + 2 * i, args, kwargs, cpu
        )
        for i, (args, kwargs, cpu) in enumerate(CASES * 3)
    ]
    other_process = protobuf.TaskSpans(TRACE, None, "other", {**PROCESS, names.PID: 7}).encode(
        "f" * 16, 1, 2, ["x"], {}, float("inf")
    )
    general = _general_spans()
    plain = [record(["2"], {"a": "b"}, 0.1), {**record(None, {}, 0.2), "scope": "app"}]
    resource = {"service.name": "s", "n": 3}
    batches = [
        [_checked(d) for d in task_spans],
        [_checked(d) for d in [*task_spans, other_process, *task_spans]],
        [*map(_checked, general), *plain, *map(_checked, task_spans[:4])],
        [],
    ]
    for batch in batches:
        line = otlpjson.dumps(batch, resource)
        assert line == _reference_line(batch, resource)
    for data in general:  # and each alone, with nothing known yet
        otlpjson._SEEN.clear()
        otlpjson._RUNS.clear()
        assert otlpjson.dumps([_checked(data)], {}) == _reference_line([_checked(data)], {})


def test_spans_that_share_a_prefix_but_not_their_attributes_are_each_written_as_they_are():
    """The attributes a process's spans share are known by their first bytes and checked
    whole: spans from another process whose attributes begin alike get their own."""
    otlpjson._RUNS.clear()
    first = protobuf.TaskSpans(TRACE, PARENT, "work", PROCESS)
    second = protobuf.TaskSpans(TRACE, PARENT, "work", {**PROCESS, names.FUNCTION: "m.other"})
    batch = [
        _checked(s.encode(f"{i + 1:016x}", 1, 2, [str(i)], {}, 0.5))
        for i, s in enumerate([first, second, first, second])
    ]
    assert otlpjson.dumps(batch, {}) == _reference_line(batch, {})
    assert len(otlpjson._RUNS) == 1  # both begin with the same 32 bytes


@pytest.mark.parametrize(("args", "kwargs", "cpu"), CASES)
def test_a_span_encoded_before_the_call_and_ended_after_it_is_the_one_encoded_at_the_end(
    args, kwargs, cpu
):
    """``tasks.run`` encodes before the call (the slot holds that) and writes the end time and
    CPU time in at ``end_at`` and ``CPU_BACK`` after it: the bytes are the same as encoding
    then, and the agent reads the message held as the running task's start."""
    spans = protobuf.TaskSpans(TRACE, PARENT, "work", PROCESS)
    before = spans.encode(SPAN, 10**18, 0, args, kwargs, 0.0)
    ended = bytearray(before)
    struct.pack_into("<Q", ended, spans.end_at, 10**18 + 5000)
    struct.pack_into("<d", ended, len(ended) - spans.CPU_BACK, cpu)
    assert bytes(ended) == spans.encode(SPAN, 10**18, 10**18 + 5000, args, kwargs, cpu)
    running = encoded.running(before)
    expected = record(args, kwargs, cpu)
    for key in ("end", "status", "message"):
        del expected[key]
    del expected["attrs"][names.TASK_CPU]
    if args is not None and any("\udcff" in a for a in args):
        expected["attrs"][names.ARGS] = [a.replace("\udcff", "?") for a in args]
    assert running == expected
    assert encoded.running(b"\xff" * 40) is None
