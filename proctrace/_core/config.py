"""Settings: read from the standard ``OTEL_*`` variables or ``configure()``, validated once.

Settings are plain data so they can ride inside a carrier to spawn and
forkserver children; a child never validates or fails on them again.

A bad value given as an argument (``configure()``, ``proctrace run``'s options) is a
programmer's error: ``ConfigurationError``. A bad value in the environment never breaks
the program: ``fromenv`` reports it in one line and uses a fallback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from . import arguments as _arguments
from . import fromenv as _env
from . import sampling
from .fromenv import DEFAULT_MAX_REPR as DEFAULT_MAX_REPR
from .fromenv import DEFAULT_PROTOCOL as DEFAULT_PROTOCOL
from .fromenv import DEFAULT_TRACE_DIR as DEFAULT_TRACE_DIR
from .fromenv import EXPORTERS as EXPORTERS
from .fromenv import LOG_FORMATS as LOG_FORMATS
from .fromenv import PROTOCOLS as PROTOCOLS


class ConfigurationError(ValueError):
    """A setting has a value proctrace cannot use; the message names the setting."""


class Settings(NamedTuple):
    """Everything a process needs to know to trace; plain data, picklable.

    A NamedTuple rather than a dataclass: importing ``dataclasses`` (and the ``inspect``
    it imports) makes every traced program bigger, and each fork child slower."""

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
    quiet: bool = False  # no lifecycle log lines on stderr, no "spans written to" line

    def to_dict(self) -> dict[str, object]:
        return dict(self._asdict())

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Settings:
        fields = set(cls._fields)
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
        settings = cls(**{k: v for k, v in values.items() if k in fields})  # type: ignore[arg-type]
        _arguments.add_given(settings.redact)
        return settings


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


def _check_endpoint(endpoint: str) -> str:
    problem = _env.endpoint_problem(endpoint)
    if problem is not None:
        raise ConfigurationError(f"endpoint={_env.public_url(endpoint)!r} {problem}")
    return endpoint


def _path_is_empty(endpoint: str) -> bool:
    from urllib.parse import urlsplit

    return not urlsplit(endpoint).path.strip("/")


def _protocol(env: Mapping[str, str], protocol: str | None, say: _env.Warn) -> str:
    if protocol is None:
        return _env.protocol(env, say)
    chosen = protocol.strip().lower()
    if chosen not in PROTOCOLS:
        raise ConfigurationError(
            f"OTLP protocol {protocol!r} is not supported; use one of {', '.join(PROTOCOLS)}"
        )
    return chosen


def _exporters(
    env: Mapping[str, str],
    exporter: str | Iterable[str] | None,
    endpoint: str | None,
    protocol: str,
    say: _env.Warn,
) -> tuple[tuple[str, ...], str | None]:
    """The exporters and the traces endpoint they send to."""
    bad_endpoint = None
    if endpoint is not None:
        traces_endpoint: str | None = _check_endpoint(endpoint)
        if protocol == "http/protobuf" and _path_is_empty(endpoint):
            traces_endpoint = endpoint.rstrip("/") + "/v1/traces"
    else:
        traces_endpoint, bad_endpoint = _env.endpoint(env, protocol)
    warning = None
    if exporter is None:
        exporters, warning = _env.exporters(env, traces_endpoint, bad_endpoint)
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
        traces_endpoint = _env.default_endpoint(protocol)
    if bad_endpoint is not None:
        say(_env.endpoint_warning(bad_endpoint, exporters, traces_endpoint))
    line = warning(exporters, traces_endpoint) if warning is not None else None
    if line is not None:
        say(line)
    return exporters, traces_endpoint


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
    quiet: bool | None = None,
    warn: _env.Warn | None = None,
) -> Settings:
    """Merge arguments over environment variables. A bad argument raises ConfigurationError;
    a bad variable is reported to ``warn`` (default: one ``proctrace:`` line on stderr, once
    per process) and its fallback is used (``fromenv``)."""
    env = os.environ if env is None else env
    say = _env.warn_once if warn is None else warn
    if disabled is None:
        disabled = _env.sdk_disabled(env, say)
    chosen_protocol = _protocol(env, protocol, say)
    exporters, traces_endpoint = _exporters(env, exporter, endpoint, chosen_protocol, say)

    if max_repr is None:
        max_repr = _env.max_repr(env, say)
    elif max_repr < 8:
        raise ConfigurationError(f"max_repr={max_repr} is too small; use 8 or more")

    if log_format is None:
        log_format = _env.log_format(env, say)
    else:
        log_format = log_format.strip().lower()
        if log_format not in LOG_FORMATS:
            raise ConfigurationError(
                f"log format {log_format!r} is not supported; use one of {', '.join(LOG_FORMATS)}"
            )

    directory = os.fspath(trace_dir) if trace_dir else _env.trace_dir(env, say)
    if isinstance(redact, str):
        raise ConfigurationError("redact must be a sequence of names, not one string")
    if log_events is None:
        log_events = _env.flag(env, "PROCTRACE_LOG_EVENTS", True, say)
    if quiet is None:
        quiet = _env.flag(env, "PROCTRACE_QUIET", False, say)
    if sampler is None:
        sampler_name, sampler_ratio = _env.sampler(env, say)
    else:
        sampler_name, sampler_ratio = _sampler(sampler, sampler_arg)
    names = tuple(str(n).lower() for n in redact)
    _arguments.add_given(names)
    return Settings(
        sampler=sampler_name,
        sampler_ratio=sampler_ratio,
        log_events=log_events,
        quiet=quiet,
        service_name=service_name or _env.service_name(env, default_service_name, say),
        exporters=exporters,
        protocol=chosen_protocol,
        endpoint=traces_endpoint,
        disabled=disabled,
        trace_dir=os.path.abspath(directory),
        max_repr=max_repr,
        log_format=log_format,
        redact=names,
    )


def _ratio(name: str, raw: object) -> float:
    ratio = _env.ratio(raw)
    if ratio is None:
        raise ConfigurationError(f"{name}={raw!r} is not a ratio between 0 and 1")
    return ratio


def _sampler(sampler: object, arg: float | None) -> tuple[str, float]:
    """``configure(sampler=...)``'s name and ratio: a name, or one of the OpenTelemetry SDK's
    standard samplers (``OTEL_TRACES_SAMPLER`` is read by ``fromenv.sampler``)."""
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
