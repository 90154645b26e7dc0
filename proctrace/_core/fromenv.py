"""The ``OTEL_*`` and ``PROCTRACE_*`` variables, read so that the environment never breaks a
program: a value proctrace cannot use is reported as one line naming the variable, the
value (never a header value or an endpoint's userinfo) and what proctrace does instead,
and the fallback applies. ``config.resolve`` merges these with ``configure()``'s
arguments, which are checked strictly instead.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping

from . import sampling

EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("grpc", "http/protobuf")
LOG_FORMATS = ("auto", "json", "console")
DEFAULT_PROTOCOL = "grpc"
DEFAULT_MAX_REPR = 256
DEFAULT_TRACE_DIR = ".proctrace"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

Warn = Callable[[str], None]
BadEndpoint = tuple[str, str, str]  # variable, value, problem

_warned: set[str] = set()


def warn_once(line: str) -> None:
    """``proctrace: line`` on stderr, once per process. Settings are read more than once in
    the main program, and children never read them (they get them in the carrier), so
    each problem is reported once per run."""
    if line in _warned:
        return
    _warned.add(line)
    try:
        sys.stderr.write(f"proctrace: {line}\n")
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # no stderr, or closed
        pass


def shown(value: str) -> str:
    """A value as a warning shows it: as written if plain, else quoted; never very long."""
    text = value if value and value.isprintable() and value == value.strip() else repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def public_url(url: str) -> str:
    """``url`` without its userinfo (a password, often): ``http://***@host:4318/v1/traces``,
    and without the values of secret-looking query parameters (``?api_key=[REDACTED]``).
    Everything up to the last ``@`` goes: a password may hold a raw ``/``, ``?``, ``#`` or
    ``@`` (it should be percent-encoded, and often is not), and hiding an ``@`` of the path
    too costs nothing."""
    if "@" in url:
        scheme, sep, rest = url.partition("://")
        url = (f"{scheme}://" if sep else "") + "***@" + (rest if sep else url).rpartition("@")[2]
    if "=" in url:  # a query's secret-looking values (?api_key=...)
        from .redact import redact_text

        url = redact_text(url)
    return url


def endpoint_problem(endpoint: str) -> str | None:
    """Why ``endpoint`` is not an OTLP endpoint proctrace can use, or None."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as exc:
        if "@" in endpoint:  # urllib quotes the bad part, which may be the password's
            return "is not a valid URL"
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return (
            "is not a URL like http://localhost:4317 "
            "(it needs an http:// or https:// scheme and a host)"
        )
    return None


def default_endpoint(protocol: str) -> str:
    """The OpenTelemetry SDK's default: a collector on this machine."""
    return "http://localhost:4317" if protocol == "grpc" else "http://localhost:4318/v1/traces"


def destination(exporters: tuple[str, ...], endpoint: str | None) -> str:
    """What the exporters do, in words, for a warning's "instead"."""
    words = {
        "file": "writing spans to the local trace file",
        "otlp": f"sending spans to {public_url(endpoint or '')}",
        "console": "printing spans on stdout",
        "none": "exporting no spans",
    }
    return " and ".join(words[name] for name in exporters)


def flag(env: Mapping[str, str], name: str, default: bool, say: Warn) -> bool:
    """A ``PROCTRACE_*`` switch: true/false, 1/0, yes/no, on/off; unset or blank: default."""
    raw = env.get(name, "")
    value = raw.strip().lower()
    if not value:
        return default
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    say(f"{name}={shown(raw)} is not true or false; using {str(default).lower()}")
    return default


def sdk_disabled(env: Mapping[str, str], say: Warn) -> bool:
    """``OTEL_SDK_DISABLED`` as the specification reads it: only ``true`` (any case)."""
    raw = env.get("OTEL_SDK_DISABLED", "")
    value = raw.strip().lower()
    if value not in ("", "true", "false"):
        say(f"OTEL_SDK_DISABLED={shown(raw)} is not true or false; tracing stays on")
    return value == "true"


def protocol(env: Mapping[str, str], say: Warn) -> str:
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        raw = env.get(name, "")
        value = raw.strip().lower()
        if not value:
            continue
        if value in PROTOCOLS:
            return value
        # http/json is a legal OTLP protocol; http/protobuf is its nearest: same port and path.
        fallback = "http/protobuf" if value.startswith("http") else DEFAULT_PROTOCOL
        say(f"{name}={shown(raw)} is not supported ({', '.join(PROTOCOLS)}); using {fallback}")
        return fallback
    return DEFAULT_PROTOCOL


def endpoint(env: Mapping[str, str], protocol: str) -> tuple[str | None, BadEndpoint | None]:
    """The traces endpoint, or the bad one found (reported with the exporters' fallback)."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        value = env.get(name, "").strip()
        if not value:
            continue
        problem = endpoint_problem(value)
        if problem is not None:
            return None, (name, value, problem)
        if name == "OTEL_EXPORTER_OTLP_ENDPOINT" and protocol != "grpc":
            return value.rstrip("/") + "/v1/traces", None
        return value, None
    return None, None


def exporters(
    env: Mapping[str, str], endpoint: str | None, bad_endpoint: BadEndpoint | None
) -> tuple[tuple[str, ...], Callable[[tuple[str, ...], str | None], str | None]]:
    """``OTEL_TRACES_EXPORTER``'s exporters (unknown names left out), and the warning to give
    once the endpoint is known (None if the variable is fine)."""
    raw = env.get("OTEL_TRACES_EXPORTER", "")
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    unknown = [n for n in dict.fromkeys(names) if n not in EXPORTERS]
    chosen = tuple(dict.fromkeys(n for n in names if n in EXPORTERS))
    if not chosen:
        chosen = ("otlp",) if endpoint else ("file",)
    if bad_endpoint is not None and "otlp" in chosen:
        # Not to a default collector nobody chose: the file keeps the spans for later.
        chosen = tuple(dict.fromkeys("file" if n == "otlp" else n for n in chosen))

    def warning(final: tuple[str, ...], final_endpoint: str | None) -> str | None:
        if not unknown:
            return None
        supported = f"is not supported ({', '.join(EXPORTERS)})"
        what = f"={shown(raw)} {supported}" if [raw.strip().lower()] == unknown else (
            f"={shown(raw)}: {', '.join(unknown)} {supported}"
        )
        return f"OTEL_TRACES_EXPORTER{what}; {destination(final, final_endpoint)} instead"

    return chosen, warning


def endpoint_warning(
    bad: BadEndpoint, final: tuple[str, ...], final_endpoint: str | None
) -> str:
    name, value, problem = bad
    doing = "ignoring it" if "otlp" not in final and "file" not in final else (
        destination(final, final_endpoint) + " instead"
    )
    return f"{name}={shown(public_url(value))} {problem}; {doing}"


def log_format(env: Mapping[str, str], say: Warn) -> str:
    raw = env.get("PROCTRACE_LOG_FORMAT", "")
    value = raw.strip().lower() or "auto"
    if value in LOG_FORMATS:
        return value
    say(f"PROCTRACE_LOG_FORMAT={shown(raw)} is not supported ({', '.join(LOG_FORMATS)}); "
        "using auto")
    return "auto"


def service_name(env: Mapping[str, str], default: Callable[[], str], say: Warn) -> str:
    """``OTEL_SERVICE_NAME``, else ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``, else
    ``default()``: the order of the OpenTelemetry specification."""
    raw = env.get("OTEL_SERVICE_NAME", "")
    if raw.strip():
        return raw
    for pair in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = pair.partition("=")
        if key.strip() == "service.name" and value.strip():
            from urllib.parse import unquote

            return unquote(value.strip())
    name = default()
    if raw:
        say(f"OTEL_SERVICE_NAME={shown(raw)} is blank; using {name}")
    return name


def max_repr(env: Mapping[str, str], say: Warn) -> int:
    raw = env.get("PROCTRACE_MAX_REPR", "")
    if not raw.strip():
        return DEFAULT_MAX_REPR
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value >= 8:
        return value
    say(f"PROCTRACE_MAX_REPR={shown(raw)} is not a whole number of 8 or more; "
        f"using {DEFAULT_MAX_REPR}")
    return DEFAULT_MAX_REPR


def trace_dir(env: Mapping[str, str], say: Warn) -> str:
    raw = env.get("PROCTRACE_DIR", "")
    if not raw:
        return DEFAULT_TRACE_DIR
    if "\0" in raw:
        say(f"PROCTRACE_DIR={shown(raw)} contains a NUL character; using {DEFAULT_TRACE_DIR}")
        return DEFAULT_TRACE_DIR
    # A directory that cannot be made or written, or that others could write to, is not an
    # error of the environment: the agent passes it over for a per-user place and says so
    # in its exit line (_otlp/files.py), when it first has something to write.
    return raw


def ratio(raw: object) -> float | None:
    """A sampling ratio, 0 to 1, or None if ``raw`` is not one."""
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and 0.0 <= value <= 1.0 else None


def sampler(env: Mapping[str, str], say: Warn) -> tuple[str, float]:
    """``OTEL_TRACES_SAMPLER`` and its argument, as the specification's fallbacks say: an
    unknown sampler is the default one, a bad ratio is 1."""
    raw_name = env.get("OTEL_TRACES_SAMPLER", "")
    name = raw_name.strip().lower() or sampling.DEFAULT
    if name not in sampling.SAMPLERS:
        say(f"OTEL_TRACES_SAMPLER={shown(raw_name)} is not supported "
            f"({', '.join(sampling.SAMPLERS)}); using {sampling.DEFAULT}")
        name = sampling.DEFAULT
    raw = env.get("OTEL_TRACES_SAMPLER_ARG", "")
    if not raw.strip() or "ratio" not in name:
        return name, 1.0
    value = ratio(raw.strip())
    if value is None:
        say(f"OTEL_TRACES_SAMPLER_ARG={shown(raw)} is not a ratio between 0 and 1; using 1.0")
        return name, 1.0
    return name, value
