"""Fake OTLP backends that fail the ways real ones do: refuse, stall, or drop everything."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from concurrent import futures
from typing import Any

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class FaultyBackend:
    """An OTLP endpoint on loopback that misbehaves.

    ``refuse``: nothing listens (connection refused). ``stall``: a real OTLP
    server that takes ``delay`` seconds to answer each export. ``drop``: a port
    that accepts connections and never answers, like a backend behind a
    firewall that drops packets.
    """

    def __init__(self, mode: str, protocol: str = "grpc", delay: float = 3.0) -> None:
        assert mode in ("refuse", "stall", "drop") and protocol in ("grpc", "http/protobuf")
        self.mode, self.protocol, self.delay = mode, protocol, delay
        self.exports = 0
        self._closers: list[Any] = []

    def __enter__(self) -> FaultyBackend:
        if self.mode == "refuse":
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
            probe.close()
        elif self.mode == "drop":
            hole = socket.socket()
            hole.bind(("127.0.0.1", 0))
            hole.listen(64)  # the kernel completes handshakes; nobody ever reads or answers
            self.port = hole.getsockname()[1]
            self._closers.append(hole.close)
        elif self.protocol == "grpc":
            self._start_stalling_grpc()
        else:
            self._start_stalling_http()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for close in self._closers:
            close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": self.protocol,
        }

    def _stall(self) -> None:
        self.exports += 1
        time.sleep(self.delay)

    def _start_stalling_grpc(self) -> None:
        import grpc

        backend = self

        class Slow(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                backend._stall()
                return trace_service_pb2.ExportTraceServiceResponse()

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Slow(), server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._closers.append(lambda: server.stop(0))

    def _start_stalling_http(self) -> None:
        backend = self

        class Slow(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                backend._stall()
                body = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
        server.daemon_threads = True
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._closers.append(server.shutdown)
