"""``proctrace send FILE``: deliver the spans a run kept in a file because its backend was down.

It sends through the same transport as the run's agent, so the same
``OTEL_EXPORTER_OTLP_*`` variables apply: headers, certificates, compression
and timeout.
"""

from __future__ import annotations

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


class Unreadable(ValueError):
    """Nothing in the file could be sent, and why."""


UNDELIVERED = "-undelivered.jsonl"  # what the agent names the spans its backend did not take


def send_file(path: str, settings: _config.Settings) -> tuple[int, bool]:
    """Export every request in ``path``; return the number of spans sent, and whether all of
    the file was.

    An undelivered file (``UNDELIVERED``) is removed once everything in it was accepted; any
    other (a run's trace file, sent to a backend) is kept. On the first failure the file is
    kept untouched, and the error is raised. A line that cannot be read or is not an export
    request is said on stderr (the first five, then a count) and skipped: the rest is sent
    and the file kept. When nothing in it can be read, ``Unreadable`` is raised and nothing
    is sent.
    """
    if settings.endpoint is None:
        raise _config.ConfigurationError(
            "no OTLP endpoint: set OTEL_EXPORTER_OTLP_ENDPOINT or pass --endpoint"
        )
    bad: list[str] = []
    count = 0

    def say(line: int, why: str) -> None:
        nonlocal count
        count += 1
        if len(bad) < 5:
            bad.append(f"line {line}: {why}")

    messages = []
    for line, request in _otlpjson.read_lines(path, say):
        try:
            messages.append((otlpjson.to_protobuf(request).SerializeToString(), _count(request)))
        except Exception as exc:  # a shape protobuf refuses: a bad line, not a crash
            say(line, f"not an OTLP export request ({describe_error(exc)[:160]})")
    if count and not messages:
        raise Unreadable(f"nothing in it could be read: {bad[0]}")
    for why in bad:
        _warn(f"{path}: {why}")
    if count > len(bad):
        _warn(f"{path}: {count - len(bad)} more lines could not be read")
    sender = transport.Transport(
        transport.options_from_env(settings.endpoint, settings.protocol, warn=_warn)
    )
    sent = 0
    try:
        for message, spans in messages:
            sender.send(message)
            sent += spans
    finally:
        sender.close()
    if count:
        _warn(f"{path} is kept: {count} line{'s' if count > 1 else ''} could not be sent")
        return sent, False
    if path.endswith(UNDELIVERED):
        problem = _otlpjson.remove_delivered(path)
        if problem is not None:
            _warn(f"{path} was sent but not removed: {problem}")
    return sent, True


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, transport.TransportError | Unreadable):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
