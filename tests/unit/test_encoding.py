"""Units of the agent's plumbing: OTLP encoding limits, the fate of late records, HTML escaping."""

from __future__ import annotations

import json

from proctrace._agent import fates as _fates
from proctrace._otlp import otlpjson
from proctrace._otlp import protobuf as _otlp
from proctrace._view import html as _html
from proctrace._view import spans as _view
from proctrace.testing import decode_request

RECORD = {
    "trace": "a" * 32, "span": "b" * 16, "parent": None, "name": "t", "start": 1, "end": 2,
    "status": 0, "attrs": {"big": 2**70, "small": -(2**63), "text": "ok"},
}


def test_integers_beyond_int64_are_sent_as_text_in_protobuf_and_json():
    """OTLP ints are int64: a larger one is kept as its decimal text, not corrupted."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    raw = _otlp.serialized_request([RECORD], {"service.name": "s"})
    (span,) = decode_request(ExportTraceServiceRequest.FromString(raw))
    assert span.attributes == {"big": str(2**70), "small": -(2**63), "text": "ok"}
    (from_json,) = decode_request(otlpjson.to_protobuf(otlpjson.request([RECORD], {})))
    assert from_json.attributes == span.attributes


def test_records_of_a_span_already_ended_as_never_started_make_no_second_span():
    """A child's start that arrives after its span was ended as never started is refused."""
    emitted = []
    fates = _fates.Fates(emitted.append, grace=0.0)
    fates.expect(
        {"k": "expect", "span": "s1", "trace": "t", "parent": None, "name": "n", "start": 1,
         "quiet_term": False, "attrs": {}}
    )
    fates.exited("s1", -9)
    fates.tick(float("inf"))
    assert [r["message"] for r in emitted] == [_fates.NEVER_RAN]
    assert fates.started(
        {"span": "s1", "trace": "t", "parent": None, "name": "n", "start": 2, "attrs": {}}
    ) is False


def test_html_page_keeps_markup_in_arguments_inside_its_data():
    """An argument containing '</script>' or '<!--' cannot end or hide the page's script."""
    span = _view.ViewSpan(
        "a" * 32, "b" * 16, None, "t", 0, 1, "UNSET", "",
        {"proctrace.args": ["'<!--<script>'", "'</script>'"]}, [], "s",
    )
    page = _html.page({"a" * 32: [span]}, "title")
    data = page.split('id="data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data
    assert json.loads(data)[0]["spans"][0]["attributes"]["proctrace.args"][1] == "'</script>'"
