"""``proctrace send FILE``: deliver the spans a run kept in a file because its backend was down."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import Any

from .._core import config as _config
from .._otlp import files as _otlpjson
from .._otlp import otlpjson

TIMEOUT = 10.0


def _count(request: dict[str, Any]) -> int:
    return sum(
        len(scope.get("spans", ()))
        for resource in request.get("resourceSpans", ())
        for scope in resource.get("scopeSpans", ())
    )


def headers(env: dict[str, str] | None = None) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` (or ``..._HEADERS``): ``k=v,k2=v2``, URL-encoded,
    as the exporters that sent the run would have used."""
    from urllib.parse import unquote

    env = dict(os.environ) if env is None else env
    raw = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS")
    found: dict[str, str] = {}
    for item in (raw or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            found[unquote(key.strip()).lower()] = unquote(value.strip())
    return found


def _grpc_sender(endpoint: str) -> Any:
    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

    target = endpoint.split("://", 1)[-1].rstrip("/")
    if endpoint.startswith("https://"):
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials())
    else:
        channel = grpc.insecure_channel(target)
    stub = TraceServiceStub(channel)  # type: ignore[no-untyped-call]
    metadata = tuple(headers().items())

    def send(message: Any) -> None:
        stub.Export(message, timeout=TIMEOUT, metadata=metadata)

    return send


def _http_sender(endpoint: str) -> Any:
    def send(message: Any) -> None:
        request = urllib.request.Request(
            endpoint,
            data=message.SerializeToString(),
            headers={**headers(), "Content-Type": "application/x-protobuf"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            response.read()

    return send


def send_file(path: str, settings: _config.Settings) -> int:
    """Export every request in ``path``; return the number of spans sent.

    The file is removed once everything in it was accepted; on the first
    failure it is kept untouched, and the error is raised.
    """
    if settings.endpoint is None:
        raise _config.ConfigurationError(
            "no OTLP endpoint: set OTEL_EXPORTER_OTLP_ENDPOINT or pass --endpoint"
        )
    requests = list(_otlpjson.read(path))
    sender = (_grpc_sender if settings.protocol == "grpc" else _http_sender)(settings.endpoint)
    sent = 0
    for request in requests:
        sender(otlpjson.to_protobuf(request))
        sent += _count(request)
    os.remove(path)
    return sent


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    details = getattr(exc, "details", None)
    if callable(details):
        return str(details())
    return f"{type(exc).__name__}: {exc}"
