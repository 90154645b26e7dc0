"""Pool task spans encoded in the worker (issue #12): the bytes are the ones the agent writes
for the same record, the agent's check refuses what is not a span, and the destinations that
need the record get it back whole."""

from __future__ import annotations

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
        "trace": TRACE, "span": SPAN, "parent": PARENT, "name": "work", "start": 10**18,
        "end": 10**18 + 5000, "status": 0, "message": "", "attrs": attrs, "events": [],
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
