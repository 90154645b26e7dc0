"""Transport options: what the OTLP exporter variables say, read as the OpenTelemetry SDK does.

:func:`options_from_env` reads the same environment variables, with the same precedence,
as the OpenTelemetry Python OTLP trace exporters; a bad value warns once and falls back.
"""

from __future__ import annotations

import base64
import logging
import math
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from .._core.fromenv import public_url

__all__ = ["DEFAULT_TIMEOUT", "PROTOCOLS", "TransportOptions", "options_from_env"]

PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_TIMEOUT = 10.0
_COMPRESSIONS = {"grpc": ("none", "gzip"), "http/protobuf": ("none", "gzip", "deflate")}
# The header syntax of the OpenTelemetry Python SDK (opentelemetry.util.re), in its
# "liberal" mode: URL-encoded key=value pairs, or else plain ones with spaces in the value.
_OWS = r"[ \t]*"
_KEY = r"[\x21\x23-\x27\x2a\x2b\x2d\x2e\x30-\x39\x41-\x5a\x5e-\x7a\x7c\x7e]+"
_VALUE = r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"
_LIBERAL_VALUE = r"[\x20\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"
_STRICT_PAIR = re.compile(rf"{_OWS}{_KEY}{_OWS}={_OWS}{_VALUE}{_OWS}")
_LIBERAL_PAIR = re.compile(rf"{_OWS}{_KEY}{_OWS}={_OWS}{_LIBERAL_VALUE}{_OWS}")
_DELIMITER = re.compile(r"[ \t]*,[ \t]*")
_TOKEN = re.compile(_KEY)
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransportOptions:
    """Where and how :class:`Transport` sends.

    ``endpoint``: for ``"grpc"`` a ``http://host:port`` (plaintext) or ``https://host:port``
    (TLS) URL, whose path is ignored (a bare ``host:port`` means TLS, as in the SDK); for
    ``"http/protobuf"`` the full traces URL (``http(s)://host:port/v1/traces``). Userinfo
    (``http://user:pass@host``) becomes a Basic ``authorization`` header for HTTP, unless
    ``headers`` has one, and is dropped for gRPC; it never appears in messages or in ``repr``.
    ``headers`` go with every request (HTTP headers, or gRPC metadata with the names
    lower-cased). ``timeout`` bounds one ``send``, retries included, in seconds. ``compression``
    is ``"none"``, ``"gzip"``, or for HTTP also ``"deflate"``. ``insecure`` (gRPC only):
    ``None`` takes it from the scheme; an ``https`` endpoint always uses TLS, as in the
    OpenTelemetry SDK. ``certificate`` is a PEM CA bundle to trust instead of the system's;
    ``client_certificate`` and ``client_key`` (PEM files) authenticate the client (mTLS).

    Raises ValueError for an unknown protocol or compression, a timeout that is not a
    positive number, an endpoint without a host, or header names and values HTTP cannot carry.
    """

    endpoint: str
    protocol: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    compression: str = "none"
    insecure: bool | None = None
    certificate: str | None = None
    client_key: str | None = None
    client_certificate: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.compression not in _COMPRESSIONS[self.protocol]:
            raise ValueError(
                f"compression for {self.protocol} must be one of "
                f"{_COMPRESSIONS[self.protocol]}, got {self.compression!r}"
            )
        if not (isinstance(self.timeout, int | float) and 0 < self.timeout < math.inf):
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        for name, value in self.headers:
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"header name {name!r} is not an HTTP token")
            if not _HEADER_VALUE.fullmatch(value):
                raise ValueError(f"header {name!r} has a value with control or non-ASCII chars")
        _Endpoint.parse(self.endpoint, self.protocol)

    def __repr__(self) -> str:
        """Show the endpoint without userinfo, and header names without their values."""
        safe = _Endpoint.parse(self.endpoint, self.protocol).url
        names = tuple(name for name, _ in self.headers)
        return (
            f"TransportOptions(endpoint={safe!r}, protocol={self.protocol!r}, "
            f"headers={names!r}, timeout={self.timeout!r}, compression={self.compression!r}, "
            f"insecure={self.insecure!r}, certificate={self.certificate!r}, "
            f"client_key={self.client_key!r}, client_certificate={self.client_certificate!r})"
        )


def options_from_env(
    endpoint: str,
    protocol: str,
    env: Mapping[str, str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> TransportOptions:
    """Transport options for ``endpoint`` and ``protocol`` from the OTLP exporter variables.

    ``env`` defaults to ``os.environ``. Each setting comes from the traces-specific variable
    when that is set and not blank, else from the generic one, as in the OpenTelemetry
    Python exporters:

    - ``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` / ``OTEL_EXPORTER_OTLP_HEADERS``: ``k=v,k2=v2``,
      URL-decoded, names lower-cased; a pair that is not URL-encoded but has no comma,
      semicolon, quote or backslash is taken as written (the SDK's liberal mode).
    - ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` / ``OTEL_EXPORTER_OTLP_TIMEOUT``: in **seconds**,
      as the installed SDK (1.45) reads them (``float(...)``, "timeout in seconds"), not in
      the milliseconds of the OTLP specification; default 10.
    - ``OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`` / ``OTEL_EXPORTER_OTLP_COMPRESSION``:
      ``gzip`` or ``none``, and ``deflate`` for HTTP only (the SDK's gRPC exporter has none).
    - ``OTEL_EXPORTER_OTLP_TRACES_INSECURE`` / ``OTEL_EXPORTER_OTLP_INSECURE`` (gRPC only):
      ``true`` or ``false``; unset, the endpoint's scheme decides.
    - ``OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`` / ``OTEL_EXPORTER_OTLP_CERTIFICATE``,
      ``..._CLIENT_KEY``, ``..._CLIENT_CERTIFICATE``: PEM file paths.

    A bad value never raises: ``warn`` (default: a ``logging`` warning) gets one
    ``"OTEL_...=value: problem; using default"`` line per bad variable (header values are
    not repeated, they are often secrets) and the default is used: no such header, 10 s,
    no compression, the scheme's choice, the system's CA certificates, no client
    certificate. ``endpoint`` and ``protocol`` are the caller's, not the environment's: a
    bad one raises ValueError as :class:`TransportOptions` does.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    say: Callable[[str], None] = warn if warn is not None else _logger.warning

    def lookup(suffix: str) -> tuple[str, str] | None:
        for name in (f"OTEL_EXPORTER_OTLP_TRACES_{suffix}", f"OTEL_EXPORTER_OTLP_{suffix}"):
            value = environ.get(name)
            if value is not None and value.strip():
                return name, value
        return None

    headers = _headers_from_env(lookup("HEADERS"), say)
    timeout = _timeout_from_env(lookup("TIMEOUT"), say)
    compression = _compression_from_env(lookup("COMPRESSION"), protocol, say)
    insecure = _insecure_from_env(lookup("INSECURE"), say) if protocol == "grpc" else None
    certificate = _ca_from_env(lookup("CERTIFICATE"), say)
    client_certificate, client_key = _client_pair_from_env(
        lookup("CLIENT_CERTIFICATE"), lookup("CLIENT_KEY"), protocol, say
    )
    return TransportOptions(
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        timeout=timeout,
        compression=compression,
        insecure=insecure,
        certificate=certificate,
        client_key=client_key,
        client_certificate=client_certificate,
    )


def _headers_from_env(
    found: tuple[str, str] | None, say: Callable[[str], None]
) -> tuple[tuple[str, str], ...]:
    """Parse ``k=v,k2=v2`` as the SDK does; warn about (and skip) pairs it cannot use."""
    if found is None:
        return ()
    var, raw = found
    headers: dict[str, str] = {}
    for number, pair in enumerate(_DELIMITER.split(raw), start=1):
        if not pair:
            continue
        if _STRICT_PAIR.fullmatch(pair.strip()):
            name, value = (unquote(part).strip() for part in pair.split("=", 1))
        elif _LIBERAL_PAIR.fullmatch(pair.strip()):
            name, value = (part.strip() for part in pair.split("=", 1))
        else:
            say(f"{var}: entry {number} is not a name=value pair; using no such header")
            continue
        if not _TOKEN.fullmatch(name) or not _HEADER_VALUE.fullmatch(value):
            say(
                f"{var}: entry {number} decodes to a name or value with control or "
                "non-ASCII characters; using no such header"
            )
            continue
        headers[name.lower()] = value
    return tuple(headers.items())


def _timeout_from_env(found: tuple[str, str] | None, say: Callable[[str], None]) -> float:
    """Seconds, a positive finite number, as the installed SDK reads the variable."""
    if found is None:
        return DEFAULT_TIMEOUT
    var, raw = found
    try:
        timeout = float(raw)
    except ValueError:
        problem = "not a number of seconds"
    else:
        if 0 < timeout < math.inf:
            return timeout
        problem = "not a positive number of seconds"
    say(f"{var}={raw}: {problem}; using {DEFAULT_TIMEOUT:g}")
    return DEFAULT_TIMEOUT


def _compression_from_env(
    found: tuple[str, str] | None, protocol: str, say: Callable[[str], None]
) -> str:
    """``gzip``, ``none``, or (HTTP only) ``deflate``."""
    if found is None:
        return "none"
    var, raw = found
    value = raw.strip().lower()
    allowed = _COMPRESSIONS.get(protocol, ("none", "gzip"))
    if value in allowed:
        return value
    say(f"{var}={raw}: {protocol} compression must be one of {', '.join(allowed)}; using none")
    return "none"


def _insecure_from_env(found: tuple[str, str] | None, say: Callable[[str], None]) -> bool | None:
    """``true`` or ``false``, any case; None (the scheme decides) when unset or bad."""
    if found is None:
        return None
    var, raw = found
    value = raw.strip().lower()
    if value in ("true", "false"):
        return value == "true"
    say(f"{var}={raw}: must be true or false; using the endpoint's scheme")
    return None


def _readable(var: str, path: str, default: str, say: Callable[[str], None]) -> bool:
    """Whether ``path`` is a readable file; warns otherwise."""
    try:
        with open(path, "rb"):
            pass
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        say(f"{var}={path}: cannot read it ({reason}); using {default}")
        return False
    return True


def _ca_from_env(found: tuple[str, str] | None, say: Callable[[str], None]) -> str | None:
    """A readable PEM CA bundle, or None for the system's trusted certificates."""
    if found is None:
        return None
    var, path = found
    default = "the system's trusted certificates"
    if not _readable(var, path, default, say):
        return None
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError:
        say(f"{var}={path}: holds no PEM certificate; using {default}")
        return None
    return path


def _client_pair_from_env(
    cert: tuple[str, str] | None,
    key: tuple[str, str] | None,
    protocol: str,
    say: Callable[[str], None],
) -> tuple[str | None, str | None]:
    """A client certificate and key that load together, or (None, None)."""
    default = "no client certificate"
    if cert is None:
        if key is not None:
            say(f"{key[0]}={key[1]}: a client key needs a client certificate; using {default}")
        return None, None
    if not _readable(*cert, default, say):
        return None, None
    if key is not None and not _readable(*key, default, say):
        return None, None
    try:
        ssl.create_default_context().load_cert_chain(cert[1], key[1] if key else None)
    except ssl.SSLError:
        names = f"{cert[0]}={cert[1]}" + (f" with {key[0]}={key[1]}" if key else "")
        problem = "is not a PEM certificate and its key" + ("" if key else " (no key file given)")
        say(f"{names}: {problem}; using {default}")
        return None, None
    return cert[1], key[1] if key else None


@dataclass(frozen=True)
class _Endpoint:
    """An endpoint URL taken apart; ``url`` is the one to show (no userinfo, no secret-looking
    query values)."""

    url: str
    scheme: str  # "http", "https", or "" for a bare grpc host:port
    host: str  # hostname, without IPv6 brackets
    port: int | None
    authority: str  # host[:port] as a gRPC target, IPv6 in brackets
    path: str  # HTTP request target: path and query
    basic_auth: str | None  # "Basic ..." from the userinfo

    @classmethod
    def parse(cls, endpoint: str, protocol: str) -> _Endpoint:
        """Parse ``endpoint``; ValueError (never quoting userinfo) if it has no usable host."""
        text = endpoint.strip()
        bare = protocol == "grpc" and "://" not in text
        parts = urlsplit("//" + text if bare else text)
        hostport = parts.netloc.rpartition("@")[2]
        scheme = "" if bare else parts.scheme.lower()
        url = urlunsplit((scheme, hostport, parts.path, parts.query, ""))
        if bare:
            url = url.removeprefix("//")
        url = public_url(url)  # as shown: a query's secret-looking values hidden too
        if scheme not in ("", "http", "https"):
            raise ValueError(f"endpoint {url!r}: the scheme must be http or https")
        if not scheme and not bare:
            raise ValueError(f"endpoint {url!r}: needs http:// or https://")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"endpoint {url!r}: {exc}") from None
        host = parts.hostname or ""
        if not host:
            raise ValueError(f"endpoint {url!r}: has no host")
        authority = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
        basic_auth = None
        if "@" in parts.netloc:
            userinfo = parts.netloc.rpartition("@")[0]
            user, _, password = userinfo.partition(":")
            token = f"{unquote(user)}:{unquote(password)}".encode()
            basic_auth = "Basic " + base64.b64encode(token).decode("ascii")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(url, scheme, host, port, authority, path, basic_auth)


