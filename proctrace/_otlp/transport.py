"""The one OTLP/trace transport: gRPC or HTTP/protobuf, for the collector agent and ``send``.

It takes bytes that are already one serialized ``ExportTraceServiceRequest`` and delivers
them, so it needs no protobuf classes. It is self-contained on purpose: the standard
library, and ``grpc`` imported only when the gRPC protocol sends its first request. It
starts no thread (grpc's C core keeps its own), connects lazily, keeps one connection
open between sends, and serializes concurrent ``send`` calls.

:func:`options_from_env` reads the same environment variables, with the same precedence,
"""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import http.client
    import ssl

from .options import PROTOCOLS, TransportOptions, _Endpoint, options_from_env

__all__ = ["PROTOCOLS", "Transport", "TransportError", "TransportOptions", "options_from_env"]

_GRPC_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# The OTLP specification's retryable gRPC codes and HTTP statuses.
_RETRYABLE_GRPC = frozenset(
    {"CANCELLED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "OUT_OF_RANGE",
     "UNAVAILABLE", "DATA_LOSS"}
)
_RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
_RETRY_DELAYS = (0.05, 0.2)  # seconds before the second and the third attempt
_MIN_ATTEMPT = 0.01  # seconds left under which another attempt is pointless
_MAX_ERROR_BODY = 64 * 1024
_MAX_DETAIL = 200
_USER_AGENT = "proctrace"



class TransportError(Exception):
    """An export the backend did not take.

    ``str()`` says why in a short human form, then where (the endpoint without any
    userinfo) and, after retries, how many attempts were made: ``"UNAVAILABLE: failed to
    connect to all addresses (http://collector:4317, 3 attempts)"``, ``"HTTP 503 Service
    Unavailable (http://collector:4318/v1/traces, 3 attempts)"``, ``"timed out after 5 s
    (...)"``. ``retryable`` says whether the same request may succeed later (the OTLP
    specification's transient gRPC codes and HTTP statuses, refused or broken connections,
    timeouts); ``False`` means the request or the configuration is wrong.
    """

    retryable: bool

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with ``retryable``, which ``Exception``'s default reduce would drop."""
        return (_rebuild_error, (str(self), self.retryable))


def _rebuild_error(message: str, retryable: bool) -> TransportError:
    """Unpickle a :class:`TransportError`."""
    return TransportError(message, retryable=retryable)




def _short(text: str) -> str:
    """One line of at most ``_MAX_DETAIL`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 1] + "…"


def _status_message(body: bytes) -> str:
    """The ``message`` (field 2) of a protobuf ``google.rpc.Status``, or "" if none."""

    def varint(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = body[at]
            value |= (byte & 0x7F) << shift
            at, shift = at + 1, shift + 7
            if not byte & 0x80:
                return value, at

    at = 0
    try:
        while at < len(body):
            key, at = varint(at)
            field, wire = key >> 3, key & 7
            if wire == 0:
                _, at = varint(at)
            elif wire == 1:
                at += 8
            elif wire == 5:
                at += 4
            elif wire == 2:
                size, at = varint(at)
                if field == 2:
                    return body[at : at + size].decode("utf-8", "replace")
                at += size
            else:
                return ""
    except IndexError:
        pass
    return ""


def _http_detail(body: bytes, content_type: str) -> str:
    """A short reason from an error response body: a Status message, or plain text."""
    if "protobuf" in content_type:
        return _short(_status_message(body))
    if content_type.startswith("text/plain") or "json" in content_type:  # not HTML pages
        return _short(body.decode("utf-8", "replace"))
    return ""


class Transport:
    """Sends serialized ``ExportTraceServiceRequest`` bytes to one OTLP endpoint.

    Construction is cheap and does not connect; the first :meth:`send` does. Not to be
    shared across ``fork``: make it in the process that sends, or ``close()`` it first.
    """

    def __init__(self, options: TransportOptions) -> None:
        self.options = options
        self._endpoint = _Endpoint.parse(options.endpoint, options.protocol)
        self._lock = threading.Lock()
        self._channel: Any = None  # grpc.Channel
        self._export: Any = None  # its Export method, bytes in and out
        self._connection: http.client.HTTPConnection | None = None
        self._tls: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        """The endpoint without userinfo, as errors show it."""
        return self._endpoint.url

    def send(self, request: bytes) -> None:
        """Deliver one serialized ``ExportTraceServiceRequest``; TransportError if not taken.

        A retryable failure is retried at most twice, 0.05 s and then 0.2 s later, and never
        past ``options.timeout`` from the call.
        """
        timeout = self.options.timeout
        deadline = time.monotonic() + timeout
        with self._lock:
            attempts = 0
            while True:
                attempts += 1
                try:
                    remaining = deadline - time.monotonic()
                    if remaining < _MIN_ATTEMPT:
                        raise TransportError(f"timed out after {timeout:g} s", retryable=True)
                    if self.options.protocol == "grpc":
                        self._send_grpc(request, remaining)
                    else:
                        self._send_http(request, remaining)
                    return
                except TransportError as error:
                    delay = _RETRY_DELAYS[attempts - 1] if attempts <= len(_RETRY_DELAYS) else None
                    if (
                        not error.retryable
                        or delay is None
                        or time.monotonic() + delay + _MIN_ATTEMPT >= deadline
                    ):
                        where = self.url + (f", {attempts} attempts" if attempts > 1 else "")
                        final = TransportError(f"{error} ({where})", retryable=error.retryable)
                        raise final from error.__cause__
                time.sleep(delay)

    def warm(self) -> None:
        """Load and set up now what the first :meth:`send` would (gRPC and its channel): in
        the agent that happens at its start, not in the middle of the first spans' flow,
        whose reading it would hold up (the import holds the GIL for ~0.1 s here)."""
        if self.options.protocol != "grpc":
            return
        try:
            import grpc  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            return  # said at the first send
        with self._lock:
            if self._export is None:
                try:
                    self._open_grpc(grpc)
                except Exception:  # said at the first send, which tries again
                    self._close_grpc()

    def close(self) -> None:
        """Close the connection; a later :meth:`send` opens a new one."""
        with self._lock:
            self._close_grpc()
            self._close_http()

    # gRPC

    def _send_grpc(self, request: bytes, remaining: float) -> None:
        """One Export call; TransportError from its status."""
        try:
            import grpc  # type: ignore[import-untyped,unused-ignore]
        except ImportError as exc:
            why = "the grpc protocol needs the grpcio package (pip install grpcio)"
            raise TransportError(why, retryable=False) from exc
        if self._export is None:
            self._open_grpc(grpc)
        compression = grpc.Compression.Gzip if self.options.compression == "gzip" else None
        metadata = tuple((name.lower(), value) for name, value in self.options.headers)
        try:
            self._export(request, timeout=remaining, metadata=metadata, compression=compression)
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            name = getattr(code, "name", "UNKNOWN")
            details = exc.details() if callable(getattr(exc, "details", None)) else None
            if name == "UNAVAILABLE":
                # A channel that failed to connect backs off before trying again; a new one
                # makes the retry, or the next send after an outage, connect at once.
                self._close_grpc()
            if name == "DEADLINE_EXCEEDED":
                why = f"timed out after {self.options.timeout:g} s"
            else:
                why = f"{name}: {_short(details)}" if details else name
            raise TransportError(why, retryable=name in _RETRYABLE_GRPC) from exc
        except Exception as exc:  # grpc refusing the call itself, e.g. bad metadata
            self._close_grpc()
            raise TransportError(f"gRPC: {_short(str(exc))}", retryable=False) from exc

    def _open_grpc(self, grpc: Any) -> None:
        """Make the channel: plaintext, or TLS with the configured certificates."""
        target = self._endpoint.authority
        options = [("grpc.primary_user_agent", _USER_AGENT)]
        if self._endpoint.scheme == "https":
            insecure = False
        elif self.options.insecure is not None:
            insecure = self.options.insecure
        else:
            insecure = self._endpoint.scheme == "http"
        if insecure:
            channel = grpc.insecure_channel(target, options=options)
        else:
            cert = self.options.client_certificate
            key = self.options.client_key or cert  # a key may sit in the certificate's file
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(self.options.certificate),
                private_key=_read(key if cert else None),
                certificate_chain=_read(cert),
            )
            channel = grpc.secure_channel(target, credentials, options=options)
        self._channel = channel
        self._export = channel.unary_unary(
            _GRPC_METHOD, request_serializer=None, response_deserializer=None
        )

    def _close_grpc(self) -> None:
        """Close and forget the channel."""
        channel, self._channel, self._export = self._channel, None, None
        if channel is not None:
            try:
                channel.close()
            except Exception:
                pass

    # HTTP/protobuf

    def _send_http(self, request: bytes, remaining: float) -> None:
        """One POST; reconnects once, at once, if a kept-alive connection turns out closed."""
        import http.client  # HTTP only: the agent exporting over gRPC never loads it
        body, headers = self._http_request(request)
        reused = self._connection is not None and self._connection.sock is not None
        try:
            status, reason, detail = self._post(body, headers, remaining)
        except (
            http.client.RemoteDisconnected,
            http.client.BadStatusLine,
            ConnectionResetError,
            ConnectionAbortedError,
            BrokenPipeError,
        ) as exc:
            if not reused:
                raise self._http_failure(exc) from exc
            try:
                status, reason, detail = self._post(body, headers, remaining)
            except (OSError, http.client.HTTPException) as again:
                raise self._http_failure(again) from again
        except (OSError, http.client.HTTPException) as exc:
            raise self._http_failure(exc) from exc
        if 200 <= status < 300:
            return
        why = f"HTTP {status} {reason}".rstrip() + (f": {detail}" if detail else "")
        raise TransportError(why, retryable=status in _RETRYABLE_HTTP)

    def _http_request(self, request: bytes) -> tuple[bytes, dict[str, str]]:
        """The body, compressed as configured, and the headers to send it with."""
        headers = {"user-agent": _USER_AGENT}
        if self._endpoint.basic_auth:
            headers["authorization"] = self._endpoint.basic_auth
        headers.update((name.lower(), value) for name, value in self.options.headers)
        headers["content-type"] = "application/x-protobuf"
        headers.pop("content-encoding", None)
        headers.pop("content-length", None)
        body = request
        if self.options.compression == "gzip":
            import gzip
            body = gzip.compress(request, compresslevel=6, mtime=0)
            headers["content-encoding"] = "gzip"
        elif self.options.compression == "deflate":
            import zlib
            body = zlib.compress(request)
            headers["content-encoding"] = "deflate"
        return body, headers

    def _post(self, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, str, str]:
        """POST once on the kept connection (opened if needed): status, reason, short detail."""
        connection = self._connection
        if connection is None:
            connection = self._connection = self._open_http()
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        try:
            connection.request("POST", self._endpoint.path, body=body, headers=headers)
            response = connection.getresponse()
            length = response.length
            data = response.read(min(length or _MAX_ERROR_BODY, _MAX_ERROR_BODY))
            if not response.isclosed():  # a body too long to read just for an error message
                self._close_http()
        except BaseException:
            self._close_http()
            raise
        if response.status // 100 == 2:
            return response.status, response.reason, ""
        content_type = (response.getheader("content-type") or "").lower()
        return response.status, response.reason, _http_detail(data, content_type)

    def _open_http(self) -> http.client.HTTPConnection:
        """A connection object (it connects on first use), TLS set up for https."""
        import http.client
        import ssl
        endpoint = self._endpoint
        if endpoint.scheme != "https":
            return http.client.HTTPConnection(endpoint.host, endpoint.port)
        if self._tls is None:
            options = self.options
            for path in (options.certificate, options.client_certificate, options.client_key):
                _read(path)  # an unreadable file is named in the error
            try:
                context = ssl.create_default_context(cafile=self.options.certificate)
                if self.options.client_certificate:
                    context.load_cert_chain(
                        self.options.client_certificate, self.options.client_key
                    )
            except (OSError, ValueError) as exc:
                raise TransportError(f"TLS setup: {_short(str(exc))}", retryable=False) from exc
            self._tls = context
        return http.client.HTTPSConnection(endpoint.host, endpoint.port, context=self._tls)

    def _http_failure(self, exc: BaseException) -> TransportError:
        """A TransportError for an exception raised while connecting or exchanging."""
        import http.client
        import ssl
        if isinstance(exc, ssl.SSLCertVerificationError):
            why = f"TLS: certificate verify failed: {exc.verify_message}"
            return TransportError(why, retryable=False)
        if isinstance(exc, ssl.SSLError):
            why = f"TLS: {_short(exc.reason or str(exc))}"
            return TransportError(why, retryable=isinstance(exc, ssl.SSLEOFError))
        if isinstance(exc, TimeoutError):
            return TransportError(f"timed out after {self.options.timeout:g} s", retryable=True)
        if isinstance(exc, ConnectionRefusedError):
            return TransportError("connection refused", retryable=True)
        if isinstance(exc, socket.gaierror):
            why = f"cannot resolve {self._endpoint.host}: {exc.strerror or exc}"
            return TransportError(why, retryable=True)
        if isinstance(exc, http.client.RemoteDisconnected):
            return TransportError("connection closed without a response", retryable=True)
        if isinstance(exc, OSError):
            return TransportError(_short(exc.strerror or str(exc)), retryable=True)
        why = f"bad HTTP response: {_short(type(exc).__name__ + ' ' + str(exc))}"
        return TransportError(why, retryable=True)

    def _close_http(self) -> None:
        """Close and forget the connection."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _read(path: str | None) -> bytes | None:
    """A PEM file's bytes, or None for no path; TransportError if unreadable."""
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            return file.read()
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        why = f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
        raise TransportError(why, retryable=False) from exc
