"""proctrace.testing.OTLPReceiver, running, fed by the real OpenTelemetry SDK exporters."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from proctrace.testing import OTLPReceiver, ReceivedSpan

PROTOCOLS = ["grpc", "http/protobuf"]


@pytest.fixture(params=PROTOCOLS)
def receiver(request: pytest.FixtureRequest) -> Iterator[OTLPReceiver]:
    with OTLPReceiver(request.param) as r:
        yield r


def _exporter(r: OTLPReceiver) -> Any:
    if r.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=r.endpoint, insecure=True, timeout=5)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPExporter,
    )

    return HTTPExporter(endpoint=r.endpoint + "/v1/traces", timeout=5)


def _emit(r: OTLPReceiver) -> tuple[Any, Any]:
    provider = TracerProvider(resource=Resource.create({"service.name": "proctrace-test"}))
    provider.add_span_processor(SimpleSpanProcessor(_exporter(r)))
    tracer = provider.get_tracer("proctrace.tests")
    try:
        with (
            tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent,
            tracer.start_as_current_span("child") as child,
        ):
            child.set_attributes({"s": "text", "i": 42, "f": 1.5, "b": True, "l": ["a", "b"]})
            child.add_event("checkpoint", {"step": 3})
            child.set_status(Status(StatusCode.ERROR, "boom"))
    finally:
        provider.shutdown()
    return parent, child


def test_env_and_endpoint(receiver: OTLPReceiver) -> None:
    """env() points an OTel SDK at the receiver's loopback endpoint with its protocol."""
    assert receiver.endpoint.startswith("http://127.0.0.1:")
    assert receiver.env() == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": receiver.protocol,
        "OTEL_TRACES_EXPORTER": "otlp",
    }


def test_receives_and_decodes_sdk_spans(receiver: OTLPReceiver) -> None:
    """Spans from the real SDK exporter arrive decoded: ids, parent link, attributes, status."""
    parent, child = _emit(receiver)
    spans = receiver.wait_for_spans(2, timeout=5)
    assert sorted(s.name for s in spans) == ["child", "parent"]
    assert receiver.requests == 2  # SimpleSpanProcessor exports one span per request

    [p] = receiver.find("parent")
    [c] = receiver.find("child")
    assert p.trace_id == format(parent.get_span_context().trace_id, "032x")
    assert p.span_id == format(parent.get_span_context().span_id, "016x")
    assert c.trace_id == p.trace_id
    assert c.span_id == format(child.get_span_context().span_id, "016x")
    assert c.parent_span_id == p.span_id
    assert p.parent_span_id is None
    assert p.kind == 2  # SPAN_KIND_SERVER
    assert c.attributes == {"s": "text", "i": 42, "f": 1.5, "b": True, "l": ("a", "b")}
    assert c.status_code == "ERROR"
    assert c.status_message == "boom"
    assert p.status_code == "UNSET"
    assert [(e.name, e.attributes) for e in c.events] == [("checkpoint", {"step": 3})]
    assert c.events[0].time_unix_nano >= c.start_time_unix_nano
    assert c.resource["service.name"] == "proctrace-test"
    assert c.scope_name == "proctrace.tests"
    assert 0 <= c.duration_ms <= p.duration_ms


def test_clear_resets_spans_and_requests(receiver: OTLPReceiver) -> None:
    """clear() drops recorded spans and the request count."""
    _emit(receiver)
    receiver.wait_for_spans(2, timeout=5)
    receiver.clear()
    assert receiver.spans == []
    assert receiver.requests == 0
    assert receiver.find("parent") == []


def test_wait_for_spans_timeout_lists_names() -> None:
    """wait_for_spans raises AssertionError naming the spans seen so far when it times out."""
    with OTLPReceiver("http/protobuf") as r:
        _emit(r)
        r.wait_for_spans(2, timeout=5)
        with pytest.raises(AssertionError, match=r"expected at least 3 span.*'child'"):
            r.wait_for_spans(3, timeout=0.1)


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_http_other_path_is_404() -> None:
    """POSTs to paths other than /v1/traces get 404 and record nothing."""
    with OTLPReceiver("http/protobuf") as r:
        status, _ = _post(r.endpoint + "/v1/metrics", b"")
        assert status == 404
        assert r.requests == 0


def test_http_bad_body_is_400() -> None:
    """An undecodable protobuf body gets 400."""
    with OTLPReceiver("http/protobuf") as r:
        headers = {"Content-Type": "application/x-protobuf"}
        status, _ = _post(r.endpoint + "/v1/traces", b"\xff\xff\xff", headers)
        assert status == 400
        assert r.requests == 0


def test_http_gzip_body_accepted() -> None:
    """A gzip Content-Encoding body is decompressed and answered with a protobuf response."""
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    span_pb = Span(name="zipped", trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span_pb])])]
    )
    with OTLPReceiver("http/protobuf") as r:
        status, payload = _post(
            r.endpoint + "/v1/traces",
            gzip.compress(request.SerializeToString()),
            {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        )
        assert status == 200
        ExportTraceServiceResponse.FromString(payload)
        [span] = r.wait_for_spans(1, timeout=1)
    assert isinstance(span, ReceivedSpan)
    assert (span.name, span.trace_id, span.span_id) == ("zipped", "01" * 16, "02" * 8)
    assert span.parent_span_id is None
