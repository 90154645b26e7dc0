"""In-process OTLP trace receiver for asserting on spans exported by child processes.

Start an :class:`OTLPReceiver`, pass ``receiver.env()`` to the processes under test, then
assert on ``receiver.wait_for_spans(n)``. Both the gRPC and the HTTP/protobuf OTLP
transports are served on 127.0.0.1 with an ephemeral port.
"""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ._core.names import STATUS_NAMES

__all__ = ["OTLPReceiver", "ReceivedEvent", "ReceivedSpan", "decode_request"]

_PROTOCOLS = ("grpc", "http/protobuf")
_STATUS_NAMES = STATUS_NAMES  # the one definition, in the core
TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class ReceivedEvent:
    """A span event decoded into plain Python values."""

    name: str
    time_unix_nano: int
    attributes: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceivedSpan:
    """A span decoded from OTLP protobuf into plain Python values.

    Ids are lowercase hex (32 chars for trace ids, 16 for span ids); ``parent_span_id``
    is None for root spans; ``status_code`` is "UNSET", "OK" or "ERROR".
    """

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: int
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict[str, object]
    status_code: str
    status_message: str
    events: tuple[ReceivedEvent, ...]
    resource: dict[str, object]
    scope_name: str
    # (trace id, span id, attributes) of each span this one links to
    links: tuple[tuple[str, str, dict[str, object]], ...] = ()

    @property
    def duration_ms(self) -> float:
        """Span duration in milliseconds (end minus start)."""
        return (self.end_time_unix_nano - self.start_time_unix_nano) / 1e6


def _decode_value(value: Any) -> object:
    """Convert an OTLP ``AnyValue`` to a Python value (arrays become tuples, kvlists dicts)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(_decode_value(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return _decode_attributes(value.kvlist_value.values)
    return getattr(value, kind)


def _decode_attributes(pairs: Any) -> dict[str, object]:
    """Convert a repeated OTLP ``KeyValue`` field to a dict."""
    return {kv.key: _decode_value(kv.value) for kv in pairs}


def _decode_span(span: Any, resource: dict[str, object], scope_name: str) -> ReceivedSpan:
    """Convert one OTLP ``Span`` message to a :class:`ReceivedSpan`."""
    events = tuple(
        ReceivedEvent(ev.name, ev.time_unix_nano, _decode_attributes(ev.attributes))
        for ev in span.events
    )
    return ReceivedSpan(
        name=span.name,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex() or None,
        kind=int(span.kind),
        start_time_unix_nano=span.start_time_unix_nano,
        end_time_unix_nano=span.end_time_unix_nano,
        attributes=_decode_attributes(span.attributes),
        status_code=_STATUS_NAMES.get(int(span.status.code), "UNSET"),
        status_message=span.status.message,
        events=events,
        resource=dict(resource),
        scope_name=scope_name,
        links=tuple(
            (link.trace_id.hex(), link.span_id.hex(), _decode_attributes(link.attributes))
            for link in span.links
        ),
    )


def decode_request(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    """Flatten an ``ExportTraceServiceRequest`` into :class:`ReceivedSpan` objects, in order."""
    return [
        _decode_span(span, _decode_attributes(rs.resource.attributes), ss.scope.name)
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]


class OTLPReceiver:
    """A real OTLP trace endpoint (gRPC or HTTP/protobuf) that records spans in memory.

    Use as a context manager or call ``start()``/``stop()``. All accessors are thread-safe;
    ``spans`` returns a snapshot list.
    """

    def __init__(self, protocol: str = "grpc", *, keep: bool = True) -> None:
        """Create an unstarted receiver; ``protocol`` is "grpc" or "http/protobuf".

        ``keep=False`` makes a cheap receiver for load: it keeps no spans, only how many
        arrived per (service name, span name), in ``counts``.
        """
        if protocol not in _PROTOCOLS:
            raise ValueError(f"protocol must be one of {_PROTOCOLS}, got {protocol!r}")
        self.protocol = protocol
        self.keep = keep
        self._cond = threading.Condition()
        self._spans: list[ReceivedSpan] = []
        self._counts: Counter[tuple[str, str]] = Counter()
        self._requests = 0
        self._last_headers: dict[str, str] = {}
        self._port: int | None = None
        self._grpc_server: Any = None
        self._http_server: http.server.ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """Base URL of the receiver; the HTTP traces path is ``endpoint + "/v1/traces"``."""
        if self._port is None:
            raise RuntimeError("OTLPReceiver is not started")
        return f"http://127.0.0.1:{self._port}"

    def env(self) -> dict[str, str]:
        """Environment variables pointing an OTel SDK's OTLP trace exporter at this receiver."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": self.protocol,
            "OTEL_TRACES_EXPORTER": "otlp",
        }

    def start(self) -> OTLPReceiver:
        """Bind a free port on 127.0.0.1 and start serving; returns self."""
        if self._port is not None:
            return self
        if self.protocol == "grpc":
            self._start_grpc()
        else:
            self._start_http()
        return self

    def stop(self) -> None:
        """Stop serving; recorded spans stay available. Safe to call more than once."""
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None).wait()
            self._grpc_server = None
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            if self._http_thread is not None:
                self._http_thread.join(timeout=5)
            self._http_server = self._http_thread = None
        self._port = None

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def spans(self) -> list[ReceivedSpan]:
        """Snapshot of all spans received so far, in arrival order."""
        with self._cond:
            return list(self._spans)

    @property
    def requests(self) -> int:
        """Number of export requests successfully received."""
        with self._cond:
            return self._requests

    @property
    def last_headers(self) -> dict[str, str]:
        """Headers (HTTP) or metadata (gRPC) of the last request received, names lower-cased.

        Empty before the first request; binary (``-bin``) gRPC metadata is left out.
        """
        with self._cond:
            return dict(self._last_headers)

    def find(self, name: str) -> list[ReceivedSpan]:
        """All received spans whose name equals ``name``."""
        return [s for s in self.spans if s.name == name]

    @property
    def counts(self) -> Counter[tuple[str, str]]:
        """How many spans arrived per (service name, span name)."""
        with self._cond:
            return Counter(self._counts)

    def clear(self) -> None:
        """Forget all received spans and reset the request count."""
        with self._cond:
            self._spans.clear()
            self._counts.clear()
            self._requests = 0
            self._last_headers = {}

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        """Block until at least ``count`` spans arrived and return a snapshot of all of them.

        Raises AssertionError listing the span names received so far if ``timeout`` elapses.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(self._counts.values()) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    names = [s.name for s in self._spans] if self.keep else dict(self._counts)
                    raise AssertionError(
                        f"expected at least {count} span(s) within {timeout}s, "
                        f"got {sum(self._counts.values())} in {self._requests} request(s): "
                        f"{names}"
                    )
                self._cond.wait(remaining)
            return list(self._spans)

    def _record(
        self, request: ExportTraceServiceRequest, headers: dict[str, str] | None = None
    ) -> None:
        """Decode and store (or just count) one export request, waking any waiters."""
        decoded = decode_request(request) if self.keep else []
        counts: Counter[tuple[str, str]] = Counter()
        if self.keep:
            counts.update((str(s.resource.get("service.name", "")), s.name) for s in decoded)
        else:
            for resource_spans in request.resource_spans:
                service = next(
                    (a.value.string_value for a in resource_spans.resource.attributes
                     if a.key == "service.name"),
                    "",
                )
                for scope_spans in resource_spans.scope_spans:
                    counts.update((service, span.name) for span in scope_spans.spans)
        with self._cond:
            self._spans.extend(decoded)
            self._counts.update(counts)
            self._requests += 1
            self._last_headers = dict(headers or {})
            self._cond.notify_all()

    def _start_grpc(self) -> None:
        """Start a grpc.server with a TraceService servicer on an ephemeral port."""
        from concurrent import futures

        import grpc  # type: ignore[import-untyped,unused-ignore]
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as pb2_grpc

        receiver = self

        class _Servicer(pb2_grpc.TraceServiceServicer):  # type: ignore[misc,unused-ignore]
            def Export(self, request: ExportTraceServiceRequest, context: Any) -> Any:
                metadata = {
                    str(item.key).lower(): item.value
                    for item in context.invocation_metadata()
                    if isinstance(item.value, str)
                }
                receiver._record(request, metadata)
                return ExportTraceServiceResponse()

        add_servicer: Any = pb2_grpc.add_TraceServiceServicer_to_server  # untyped in generated code
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        add_servicer(_Servicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._grpc_server, self._port = server, port

    def _start_http(self) -> None:
        """Start a ThreadingHTTPServer accepting POST /v1/traces in a daemon thread."""
        receiver = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != TRACES_PATH:
                    self._reply(404, b"not found", "text/plain")
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                        body = gzip.decompress(body)
                    request = ExportTraceServiceRequest.FromString(body)
                except Exception as exc:
                    self._reply(400, f"bad OTLP request: {exc}".encode(), "text/plain")
                    return
                receiver._record(request, {k.lower(): v for k, v in self.headers.items()})
                ok = ExportTraceServiceResponse().SerializeToString()
                self._reply(200, ok, "application/x-protobuf")

            def _reply(self, code: int, payload: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Silence per-request logging to stderr."""

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        serve = {"poll_interval": 0.05}  # fast shutdown()
        thread = threading.Thread(target=server.serve_forever, kwargs=serve, daemon=True)
        thread.start()
        self._http_server, self._http_thread, self._port = server, thread, server.server_address[1]
