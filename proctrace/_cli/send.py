"""``proctrace send FILE``: deliver the spans a run kept in a file because its backend was down.

It sends through the same transport as the run's agent, so the same
``OTEL_EXPORTER_OTLP_*`` variables apply: headers, certificates, compression
and timeout.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .._core import config as _config
from .._otlp import files as _otlpjson
from .._otlp import otlpjson, transport


def _count(request: dict[str, Any]) -> int:
    return sum(
        len(scope.get("spans", ()))
        for resource in request.get("resourceSpans", ())
        for scope in resource.get("scopeSpans", ())
    )


def _warn(line: str) -> None:
    sys.stderr.write(f"proctrace: {line}\n")


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
    sender = transport.Transport(
        transport.options_from_env(settings.endpoint, settings.protocol, warn=_warn)
    )
    sent = 0
    try:
        for request in requests:
            sender.send(otlpjson.to_protobuf(request).SerializeToString())
            sent += _count(request)
    finally:
        sender.close()
    os.remove(path)
    return sent


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, transport.TransportError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
