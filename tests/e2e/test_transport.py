"""Transport against real OTLP endpoints: the test receiver, and small servers that fail on cue."""

from __future__ import annotations

import base64
import http.server
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from proctrace._otlp.transport import Transport, TransportError, TransportOptions, options_from_env
from proctrace.testing import OTLPReceiver, decode_request

PROTOCOLS = ("grpc", "http/protobuf")
SERVICE = "/opentelemetry.proto.collector.trace.v1.TraceService"


def export_request(*names: str) -> bytes:
    """A serialized ExportTraceServiceRequest holding one span per name, one trace."""
    request = ExportTraceServiceRequest()
    resource_spans: ResourceSpans = request.resource_spans.add()
    attribute = resource_spans.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", "transport-test"
    scope_spans: ScopeSpans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "tests.e2e"
    trace_id = os.urandom(16)
    for name in names:
        span: Span = scope_spans.spans.add()
        span.name, span.trace_id, span.span_id = name, trace_id, os.urandom(8)
        span.start_time_unix_nano = time.time_ns()
        span.end_time_unix_nano = span.start_time_unix_nano + 1_000_000
    return bytes(request.SerializeToString())


def endpoint_of(receiver: OTLPReceiver) -> str:
    """The URL a Transport takes for this receiver (HTTP needs the traces path)."""
    return receiver.endpoint + ("/v1/traces" if receiver.protocol == "http/protobuf" else "")


def refused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Small servers that answer as told.


@dataclass
class Seen:
    """What a test server received: per request, its headers and its (decoded) body."""

    headers: list[dict[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)


Reply = tuple[int, bytes, str]  # status, body, content type


class HTTPServer:
    """An OTLP/HTTP endpoint replying from ``replies`` (the last one repeats), optionally
    keeping connections alive, closing them after each reply, stalling, or serving TLS."""

    def __init__(
        self,
        replies: list[Reply] | None = None,
        *,
        keep_alive: bool = False,
        drop_after_reply: bool = False,
        stall: threading.Event | None = None,
        tls: ssl.SSLContext | None = None,
        port: int = 0,
    ) -> None:
        self.replies = replies or [(200, b"", "application/x-protobuf")]
        self.seen = Seen()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding")
                if encoding == "deflate":
                    body = zlib.decompress(body)
                elif encoding == "gzip":
                    import gzip

                    body = gzip.decompress(body)
                server.seen.headers.append({k.lower(): v for k, v in self.headers.items()})
                server.seen.bodies.append(body)
                server.seen.peers.append(self.client_address)
                if stall is not None:
                    stall.wait(10)
                index = min(len(server.seen.bodies), len(server.replies)) - 1
                status, payload, content_type = server.replies[index]
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                if drop_after_reply:  # as a server whose keep-alive timeout ran out
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/v1/traces"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> HTTPServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class GRPCServer:
    """A TraceService whose Export calls ``behaviour(request_bytes, context)``, optionally TLS."""

    def __init__(
        self,
        behaviour: Callable[[bytes, Any], None] | None = None,
        credentials: Any = None,
        port: int = 0,
        server_options: list[tuple[str, Any]] | None = None,
    ) -> None:
        self.seen = Seen()
        seen = self.seen

        def export(request: bytes, context: Any) -> bytes:
            seen.headers.append({m.key: m.value for m in context.invocation_metadata()})
            seen.bodies.append(request)
            if behaviour is not None:
                behaviour(request, context)
            return b""

        handler = grpc.method_handlers_generic_handler(
            SERVICE.lstrip("/"), {"Export": grpc.unary_unary_rpc_method_handler(export)}
        )
        executor = futures.ThreadPoolExecutor(max_workers=4)
        self.server = grpc.server(executor, options=server_options or [])
        self.server.add_generic_rpc_handlers((handler,))
        if credentials is None:
            self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
            self.url = f"http://127.0.0.1:{self.port}"
        else:
            self.port = self.server.add_secure_port(f"127.0.0.1:{port}", credentials)
            self.url = f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> GRPCServer:
        self.server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.stop(grace=None).wait()


def names_in(body: bytes) -> list[str]:
    """Span names in a serialized request."""
    return [s.name for s in decode_request(ExportTraceServiceRequest.FromString(body))]


# Delivery through the real receiver.


@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_spans_arrive(protocol: str, compression: str) -> None:
    """Request bytes sent over either protocol, compressed or not, arrive as the same spans,
    and a kept transport sends again."""
    with OTLPReceiver(protocol) as receiver:
        options = TransportOptions(endpoint_of(receiver), protocol, compression=compression)
        transport = Transport(options)
        try:
            transport.send(export_request("first", "second"))
            transport.send(export_request("third"))
        finally:
            transport.close()
        spans = receiver.wait_for_spans(3)
    assert [s.name for s in spans] == ["first", "second", "third"]
    assert spans[0].trace_id == spans[1].trace_id != spans[2].trace_id
    assert {s.resource["service.name"] for s in spans} == {"transport-test"}
    assert receiver.requests == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_headers_from_env_reach_the_receiver(protocol: str) -> None:
    """OTEL_EXPORTER_OTLP_TRACES_HEADERS arrive as HTTP headers or gRPC metadata, decoded."""
    env = {"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "X-Api-Key=s%20cret,tenant=acme"}
    with OTLPReceiver(protocol) as receiver:
        transport = Transport(options_from_env(endpoint_of(receiver), protocol, env=env))
        transport.send(export_request("span"))
        transport.close()
        receiver.wait_for_spans(1)
        headers = receiver.last_headers
    assert headers["x-api-key"] == "s cret"
    assert headers["tenant"] == "acme"
    if protocol == "http/protobuf":
        assert headers["content-type"] == "application/x-protobuf"


def test_http_userinfo_becomes_basic_authorization() -> None:
    """http://user:pass@host sends a Basic authorization header (percent-decoded)."""
    with OTLPReceiver("http/protobuf") as receiver:
        url = endpoint_of(receiver).replace("http://", "http://alice:p%40ss@")
        transport = Transport(TransportOptions(url, "http/protobuf"))
        assert transport.url == endpoint_of(receiver)
        transport.send(export_request("span"))
        transport.close()
        receiver.wait_for_spans(1)
        expected = "Basic " + base64.b64encode(b"alice:p@ss").decode()
        assert receiver.last_headers["authorization"] == expected


def test_explicit_authorization_header_wins_over_userinfo() -> None:
    """An authorization header given in the options is sent instead of the URL's userinfo."""
    with OTLPReceiver("http/protobuf") as receiver:
        url = endpoint_of(receiver).replace("http://", "http://alice:pw@")
        options = TransportOptions(url, "http/protobuf", headers=(("authorization", "Bearer t"),))
        Transport(options).send(export_request("span"))
        receiver.wait_for_spans(1)
        assert receiver.last_headers["authorization"] == "Bearer t"


def test_grpc_userinfo_and_path_are_stripped_from_the_target() -> None:
    """For gRPC, userinfo and any path are dropped: the channel targets host:port."""
    with OTLPReceiver("grpc") as receiver:
        url = receiver.endpoint.replace("http://", "http://alice:pw@") + "/ignored/path"
        transport = Transport(TransportOptions(url, "grpc"))
        transport.send(export_request("span"))
        transport.close()
        assert [s.name for s in receiver.wait_for_spans(1)] == ["span"]
        assert "authorization" not in receiver.last_headers


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_send_starts_no_thread(protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """send() starts no Python thread in the calling thread (servers' own threads aside)."""
    started: list[str] = []
    original = threading.Thread.start
    caller = threading.current_thread()

    def spy(thread: threading.Thread) -> None:
        if threading.current_thread() is caller:
            started.append(thread.name)
        original(thread)

    with OTLPReceiver(protocol) as receiver:
        transport = Transport(TransportOptions(endpoint_of(receiver), protocol))
        monkeypatch.setattr(threading.Thread, "start", spy)
        transport.send(export_request("span"))
        transport.close()
        monkeypatch.undo()
        receiver.wait_for_spans(1)
    assert started == []


# Failures.


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_refused_port_is_retryable_and_quick(protocol: str) -> None:
    """Nothing listening: a retryable TransportError well within the timeout, after the
    bounded retries, whose message has the endpoint but never its userinfo."""
    port = refused_port()
    path = "/v1/traces" if protocol == "http/protobuf" else ""
    transport = Transport(
        TransportOptions(f"http://bob:hunter2@127.0.0.1:{port}{path}", protocol, timeout=5)
    )
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        transport.send(export_request("span"))
    elapsed = time.monotonic() - started
    transport.close()
    assert caught.value.retryable is True
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "3 attempts" in message
    assert "hunter2" not in message and "bob" not in message
    assert message.startswith("UNAVAILABLE: " if protocol == "grpc" else "connection refused")
    assert 0.25 <= elapsed < 2.5, elapsed


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_send_works_as_soon_as_the_backend_is_back(protocol: str) -> None:
    """After refused sends, the same transport delivers at once when the endpoint listens
    again (for gRPC, the failed channel's reconnect backoff does not keep it failing)."""
    port = refused_port()
    url = f"http://127.0.0.1:{port}" + ("/v1/traces" if protocol == "http/protobuf" else "")
    transport = Transport(TransportOptions(url, protocol, timeout=0.5))
    with pytest.raises(TransportError) as caught:
        transport.send(export_request("lost"))
    assert caught.value.retryable is True
    server: Any = GRPCServer(port=port) if protocol == "grpc" else HTTPServer(port=port)
    with server:
        transport.send(export_request("back"))
        transport.close()
    assert [names_in(b) for b in server.seen.bodies] == [["back"]]


def test_http_retryable_status_is_retried_then_succeeds() -> None:
    """A 503 is retried (bounded) and a later 2xx counts as delivered."""
    replies = [(503, b"busy", "text/plain"), (200, b"", "application/x-protobuf")]
    with HTTPServer(replies) as server:
        Transport(TransportOptions(server.url, "http/protobuf")).send(export_request("span"))
    assert [names_in(b) for b in server.seen.bodies] == [["span"], ["span"]]


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_http_retryable_statuses_give_up_after_three_attempts(status: int) -> None:
    """429/502/503/504 are retryable: three attempts in all, then a retryable error saying
    the status and reason."""
    with HTTPServer([(status, b"try later", "text/plain")]) as server:
        transport = Transport(TransportOptions(server.url, "http/protobuf"))
        with pytest.raises(TransportError) as caught:
            transport.send(export_request("span"))
    assert caught.value.retryable is True
    assert len(server.seen.bodies) == 3
    reason = http.server.BaseHTTPRequestHandler.responses[status][0]
    assert str(caught.value) == f"HTTP {status} {reason}: try later ({server.url}, 3 attempts)"


def test_http_client_error_is_not_retried_and_shows_the_status_message() -> None:
    """A 400 with a google.rpc.Status body fails at once, not retryable, with its message."""
    from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]

    body = Status(code=3, message="span 7 has no trace id").SerializeToString()
    reply = (400, body, "application/x-protobuf")
    with HTTPServer([reply]) as server, pytest.raises(TransportError) as caught:
        Transport(TransportOptions(server.url, "http/protobuf")).send(export_request("s"))
    assert caught.value.retryable is False
    assert len(server.seen.bodies) == 1
    assert str(caught.value) == f"HTTP 400 Bad Request: span 7 has no trace id ({server.url})"


def test_http_deflate_compression() -> None:
    """compression="deflate" (HTTP only) sends a zlib body with Content-Encoding: deflate."""
    request = export_request("span")
    with HTTPServer() as server:
        options = TransportOptions(server.url, "http/protobuf", compression="deflate")
        Transport(options).send(request)
    assert server.seen.headers[0]["content-encoding"] == "deflate"
    assert server.seen.bodies == [request]


def test_http_keeps_one_connection_alive() -> None:
    """Several sends to a keep-alive server reuse one TCP connection."""
    with HTTPServer(keep_alive=True) as server:
        transport = Transport(TransportOptions(server.url, "http/protobuf"))
        for _ in range(3):
            transport.send(export_request("span"))
        transport.close()
    assert len(server.seen.bodies) == 3
    assert len(set(server.seen.peers)) == 1


def test_http_reconnects_once_when_the_kept_connection_was_closed() -> None:
    """When the server closed a kept-alive connection, the next send reconnects at once and
    delivers exactly once."""
    with HTTPServer(keep_alive=True, drop_after_reply=True) as server:
        transport = Transport(TransportOptions(server.url, "http/protobuf"))
        transport.send(export_request("one"))
        time.sleep(0.1)  # let the server's close arrive
        transport.send(export_request("two"))
        transport.close()
    assert [names_in(b) for b in server.seen.bodies] == [["one"], ["two"]]
    assert len(set(server.seen.peers)) == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_timeout_bounds_the_whole_send(protocol: str) -> None:
    """A backend that does not answer: a retryable "timed out after 0.4 s" error, and send
    returns soon after the timeout, retries included."""
    release = threading.Event()

    def stall(request: bytes, context: Any) -> None:
        release.wait(10)

    if protocol == "grpc":
        server: Any = GRPCServer(stall)
    else:
        server = HTTPServer(stall=release)
    with server:
        transport = Transport(TransportOptions(server.url, protocol, timeout=0.4))
        started = time.monotonic()
        try:
            with pytest.raises(TransportError) as caught:
                transport.send(export_request("span"))
        finally:
            elapsed = time.monotonic() - started
            release.set()
            transport.close()
    assert caught.value.retryable is True
    assert str(caught.value).startswith("timed out after 0.4 s (")
    assert 0.35 <= elapsed < 1.2, elapsed


def test_grpc_status_codes_map_to_retryable() -> None:
    """A retryable gRPC code is retried then raised retryable; any other code fails at once."""

    def unavailable(request: bytes, context: Any) -> None:
        context.abort(grpc.StatusCode.UNAVAILABLE, "draining")

    def invalid(request: bytes, context: Any) -> None:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "span 7 has no trace id")

    with GRPCServer(unavailable) as server, pytest.raises(TransportError) as caught:
        Transport(TransportOptions(server.url, "grpc")).send(export_request("span"))
    assert caught.value.retryable is True
    assert str(caught.value) == f"UNAVAILABLE: draining ({server.url}, 3 attempts)"
    assert len(server.seen.bodies) == 3

    with GRPCServer(invalid) as server, pytest.raises(TransportError) as caught:
        Transport(TransportOptions(server.url, "grpc")).send(export_request("span"))
    assert caught.value.retryable is False
    assert str(caught.value) == f"INVALID_ARGUMENT: span 7 has no trace id ({server.url})"
    assert len(server.seen.bodies) == 1


def test_grpc_gzip_is_on_the_wire() -> None:
    """compression="gzip" really compresses gRPC calls: a server with gzip disabled refuses
    them (UNIMPLEMENTED, not retryable), and takes the same call uncompressed."""
    request = export_request("span")
    with GRPCServer(server_options=[("grpc.compression_enabled_algorithms_bitset", 1)]) as server:
        gzipped = Transport(TransportOptions(server.url, "grpc", compression="gzip"))
        with pytest.raises(TransportError) as caught:
            gzipped.send(request)
        gzipped.close()
        Transport(TransportOptions(server.url, "grpc")).send(request)
    assert caught.value.retryable is False
    assert str(caught.value).startswith("UNIMPLEMENTED: "), str(caught.value)
    assert server.seen.bodies == [request]


# TLS, with certificates made by openssl.


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed server certificate for 127.0.0.1 and a self-signed client certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed, so no TLS certificate can be made")
    folder = tmp_path_factory.mktemp("tls")
    paths = {}
    for who, extra in (("server", ["-addext", "subjectAltName=IP:127.0.0.1"]), ("client", [])):
        cert, key = folder / f"{who}.pem", folder / f"{who}.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-days", "2", "-subj", f"/CN={who}", *extra],
            check=True, capture_output=True, timeout=60,
        )
        paths[f"{who}_cert"], paths[f"{who}_key"] = cert, key
    return paths


def server_tls(certs: dict[str, Path], require_client: bool) -> ssl.SSLContext:
    """A server-side SSL context, optionally requiring the test client certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs["server_cert"], certs["server_key"])
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(certs["client_cert"])
    return context


def grpc_server_credentials(certs: dict[str, Path], require_client: bool) -> Any:
    """gRPC server credentials, optionally requiring the test client certificate."""
    pair = (certs["server_key"].read_bytes(), certs["server_cert"].read_bytes())
    if not require_client:
        return grpc.ssl_server_credentials([pair])
    return grpc.ssl_server_credentials(
        [pair], root_certificates=certs["client_cert"].read_bytes(), require_client_auth=True
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_with_otel_exporter_otlp_certificate(protocol: str, certs: dict[str, Path]) -> None:
    """An https endpoint whose CA is given by OTEL_EXPORTER_OTLP_CERTIFICATE gets the spans."""
    env = {"OTEL_EXPORTER_OTLP_CERTIFICATE": str(certs["server_cert"])}
    server: Any = (
        GRPCServer(credentials=grpc_server_credentials(certs, False))
        if protocol == "grpc"
        else HTTPServer(tls=server_tls(certs, False))
    )
    with server:
        transport = Transport(options_from_env(server.url, protocol, env=env, warn=pytest.fail))
        transport.send(export_request("secure"))
        transport.close()
    assert names_in(server.seen.bodies[0]) == ["secure"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_without_the_ca_fails(protocol: str, certs: dict[str, Path]) -> None:
    """Without the CA, the self-signed server is not trusted and nothing is delivered."""
    server: Any = (
        GRPCServer(credentials=grpc_server_credentials(certs, False))
        if protocol == "grpc"
        else HTTPServer(tls=server_tls(certs, False))
    )
    with server:
        transport = Transport(TransportOptions(server.url, protocol, timeout=3))
        with pytest.raises(TransportError) as caught:
            transport.send(export_request("span"))
        transport.close()
    assert server.seen.bodies == []
    if protocol == "http/protobuf":
        assert caught.value.retryable is False
        assert str(caught.value).startswith("TLS: certificate verify failed")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mutual_tls_with_client_certificate(protocol: str, certs: dict[str, Path]) -> None:
    """CLIENT_CERTIFICATE and CLIENT_KEY authenticate to a server that requires them; without
    them the server refuses."""
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(certs["server_cert"]),
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": str(certs["client_cert"]),
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": str(certs["client_key"]),
    }
    server: Any = (
        GRPCServer(credentials=grpc_server_credentials(certs, True))
        if protocol == "grpc"
        else HTTPServer(tls=server_tls(certs, True))
    )
    with server:
        transport = Transport(options_from_env(server.url, protocol, env=env, warn=pytest.fail))
        transport.send(export_request("mutual"))
        transport.close()
        anonymous = Transport(
            TransportOptions(server.url, protocol, certificate=str(certs["server_cert"]), timeout=3)
        )
        with pytest.raises(TransportError):
            anonymous.send(export_request("anonymous"))
        anonymous.close()
    assert [names_in(b) for b in server.seen.bodies] == [["mutual"]]


def test_insecure_false_uses_tls_for_an_http_endpoint(certs: dict[str, Path]) -> None:
    """For gRPC, OTEL_EXPORTER_OTLP_INSECURE=false makes an http:// endpoint use TLS."""
    env = {
        "OTEL_EXPORTER_OTLP_INSECURE": "false",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(certs["server_cert"]),
    }
    with GRPCServer(credentials=grpc_server_credentials(certs, False)) as server:
        url = server.url.replace("https://", "http://")
        transport = Transport(options_from_env(url, "grpc", env=env, warn=pytest.fail))
        transport.send(export_request("secure"))
        transport.close()
    assert names_in(server.seen.bodies[0]) == ["secure"]


def test_unreadable_certificate_in_options_is_not_retryable(tmp_path: Path) -> None:
    """A certificate path given directly that cannot be read fails the send, not retryable,
    without connecting."""
    missing = str(tmp_path / "missing.pem")
    for protocol, url in (("grpc", "https://127.0.0.1:9"), ("http/protobuf", "https://127.0.0.1:9/")):
        transport = Transport(TransportOptions(url, protocol, certificate=missing))
        with pytest.raises(TransportError) as caught:
            transport.send(export_request("span"))
        assert caught.value.retryable is False
        assert "missing.pem" in str(caught.value)


@pytest.fixture(autouse=True)
def _no_leaked_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests pass ``env`` explicitly; the process's OTLP variables must not leak in."""
    for name in list(os.environ):
        if name.startswith("OTEL_EXPORTER_OTLP_"):
            monkeypatch.delenv(name)
    yield
