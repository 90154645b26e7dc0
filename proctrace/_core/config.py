"""Settings: read from the standard ``OTEL_*`` variables or ``configure()``, validated once.

Settings are plain data so they can ride inside a carrier to spawn and
forkserver children; a child never validates or fails on them again.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Iterable, Mapping

from . import sampling

EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("grpc", "http/protobuf")
LOG_FORMATS = ("auto", "json", "console")
DEFAULT_PROTOCOL = "grpc"
DEFAULT_MAX_REPR = 256
DEFAULT_TRACE_DIR = ".proctrace"


class ConfigurationError(ValueError):
    """A setting has a value proctrace cannot use; the message names the setting."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a process needs to know to trace; plain data, picklable."""

    service_name: str
    exporters: tuple[str, ...]  # subset of EXPORTERS, or ("file",) for the embedded default
    protocol: str
    endpoint: str | None  # the traces endpoint, complete (http: with /v1/traces)
    disabled: bool = False
    trace_dir: str = DEFAULT_TRACE_DIR
    max_repr: int = DEFAULT_MAX_REPR
    log_format: str = "auto"
    redact: tuple[str, ...] = ()
    log_events: bool = True  # structlog events of a traced child also become span events
    sampler: str = sampling.DEFAULT  # one of sampling.SAMPLERS
    sampler_ratio: float = 1.0  # for the traceidratio samplers

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Settings:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
        return cls(**{k: v for k, v in values.items() if k in fields})  # type: ignore[arg-type]


def default_service_name() -> str:
    """The script's stem, or the module run with ``-m``, or ``python``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        name: str = spec.name
        return name.removesuffix(".__main__")
    path = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else "")
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem or "python"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _check_endpoint(name: str, endpoint: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    try:
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as exc:
        raise ConfigurationError(f"{name}={endpoint!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{name}={endpoint!r} is not a URL like http://localhost:4317 "
            "(it needs an http:// or https:// scheme and a host)"
        )
    return endpoint


def _path_is_empty(endpoint: str) -> bool:
    from urllib.parse import urlsplit

    return not urlsplit(endpoint).path.strip("/")


def resolve(
    *,
    env: Mapping[str, str] | None = None,
    service_name: str | None = None,
    exporter: str | Iterable[str] | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    disabled: bool | None = None,
    trace_dir: str | os.PathLike[str] | None = None,
    max_repr: int | None = None,
    log_format: str | None = None,
    redact: Iterable[str] = (),
    log_events: bool | None = None,
    sampler: object = None,
    sampler_arg: float | None = None,
) -> Settings:
    """Merge arguments over environment variables; raise ConfigurationError on bad values."""
    env = os.environ if env is None else env
    if disabled is None:
        disabled = _truthy(env.get("OTEL_SDK_DISABLED"))

    protocol = protocol or env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL"
    ) or DEFAULT_PROTOCOL
    protocol = protocol.strip().lower()
    if protocol not in PROTOCOLS:
        raise ConfigurationError(
            f"OTLP protocol {protocol!r} is not supported; use one of {', '.join(PROTOCOLS)}"
        )

    traces_endpoint: str | None
    if endpoint is not None:
        traces_endpoint = _check_endpoint("endpoint", endpoint)
        if protocol == "http/protobuf" and _path_is_empty(endpoint):
            traces_endpoint = endpoint.rstrip("/") + "/v1/traces"
    elif env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        traces_endpoint = _check_endpoint(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        )
    elif env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        base = _check_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        traces_endpoint = base.rstrip("/") + "/v1/traces" if protocol != "grpc" else base
    else:
        traces_endpoint = None

    if exporter is None:
        exporter = env.get("OTEL_TRACES_EXPORTER") or None
    if exporter is None:
        exporters: tuple[str, ...] = ("otlp",) if traces_endpoint else ("file",)
    else:
        names = exporter.split(",") if isinstance(exporter, str) else list(exporter)
        exporters = tuple(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
        unknown = [n for n in exporters if n not in EXPORTERS]
        if unknown or not exporters:
            raise ConfigurationError(
                f"traces exporter {', '.join(unknown) or repr(exporter)} is not supported; "
                f"use one or more of {', '.join(EXPORTERS)}"
            )
        if "none" in exporters:
            exporters = ("none",)
        if "otlp" in exporters and traces_endpoint is None:
            # Same default as the OpenTelemetry SDK: a collector on this machine.
            traces_endpoint = (
                "http://localhost:4317" if protocol == "grpc" else "http://localhost:4318/v1/traces"
            )

    if max_repr is None:
        raw = env.get("PROCTRACE_MAX_REPR", str(DEFAULT_MAX_REPR))
        try:
            max_repr = int(raw)
        except ValueError:
            raise ConfigurationError(f"PROCTRACE_MAX_REPR={raw!r} is not a whole number") from None
    if max_repr < 8:
        raise ConfigurationError(f"max_repr={max_repr} is too small; use 8 or more")

    log_format = (log_format or env.get("PROCTRACE_LOG_FORMAT") or "auto").strip().lower()
    if log_format not in LOG_FORMATS:
        raise ConfigurationError(
            f"log format {log_format!r} is not supported; use one of {', '.join(LOG_FORMATS)}"
        )

    directory = os.fspath(trace_dir or env.get("PROCTRACE_DIR") or DEFAULT_TRACE_DIR)
    if isinstance(redact, str):
        raise ConfigurationError("redact must be a sequence of names, not one string")
    redact = tuple(str(n).lower() for n in redact)
    if log_events is None:
        raw_events = env.get("PROCTRACE_LOG_EVENTS", "true").strip().lower()
        if raw_events not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ConfigurationError(f"PROCTRACE_LOG_EVENTS={raw_events!r} is not true or false")
        log_events = _truthy(raw_events)
    sampler_name, sampler_ratio = _sampler(env, sampler, sampler_arg)
    return Settings(
        sampler=sampler_name,
        sampler_ratio=sampler_ratio,
        log_events=log_events,
        service_name=service_name or env.get("OTEL_SERVICE_NAME") or default_service_name(),
        exporters=exporters,
        protocol=protocol,
        endpoint=traces_endpoint,
        disabled=disabled,
        trace_dir=os.path.abspath(directory),
        max_repr=max_repr,
        log_format=log_format,
        redact=redact,
    )


def _ratio(name: str, raw: object) -> float:
    try:
        ratio = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None
    if not (math.isfinite(ratio) and 0.0 <= ratio <= 1.0):
        raise ConfigurationError(f"{name}={raw!r} is not a ratio between 0 and 1")
    return ratio


def _sampler(env: Mapping[str, str], sampler: object, arg: float | None) -> tuple[str, float]:
    """The sampler's name and ratio: ``configure(sampler=...)`` (a name, or one of the
    OpenTelemetry SDK's standard samplers), else ``OTEL_TRACES_SAMPLER`` and its argument."""
    if sampler is None:
        name = (env.get("OTEL_TRACES_SAMPLER") or sampling.DEFAULT).strip().lower()
        if name not in sampling.SAMPLERS:
            raise ConfigurationError(
                f"OTEL_TRACES_SAMPLER={name!r} is not supported; use one of "
                + ", ".join(sampling.SAMPLERS)
            )
        raw = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
        ratio = _ratio("OTEL_TRACES_SAMPLER_ARG", raw) if raw and "ratio" in name else 1.0
        return name, ratio
    if isinstance(sampler, str):
        name = sampler.strip().lower()
        if name not in sampling.SAMPLERS:
            raise ConfigurationError(
                f"sampler {sampler!r} is not supported; use one of " + ", ".join(sampling.SAMPLERS)
            )
        return name, _ratio("sampler_arg", arg) if arg is not None else 1.0
    describe = getattr(sampler, "get_description", None)
    found = sampling.from_description(str(describe())) if callable(describe) else None
    if found is None:
        raise ConfigurationError(
            f"sampler {sampler!r} is not one proctrace can carry to child processes; use a "
            "name (" + ", ".join(sampling.SAMPLERS) + "), ALWAYS_ON, ALWAYS_OFF, "
            "TraceIdRatioBased(r) or ParentBased(one of those)"
        )
    return found
