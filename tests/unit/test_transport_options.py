"""options_from_env: the OTLP exporter variables, read as the OpenTelemetry Python SDK does."""

from __future__ import annotations

import logging
import pickle
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctrace._otlp.transport import (
    Transport,
    TransportError,
    TransportOptions,
    options_from_env,
)

GRPC = "http://127.0.0.1:4317"
HTTP = "http://127.0.0.1:4318/v1/traces"
SUFFIXES = (
    "HEADERS",
    "TIMEOUT",
    "COMPRESSION",
    "INSECURE",
    "CERTIFICATE",
    "CLIENT_KEY",
    "CLIENT_CERTIFICATE",
)


class Warnings(list[str]):
    """Collects warn() calls."""

    def __call__(self, message: str) -> None:
        self.append(message)


def read(env: dict[str, str], protocol: str = "grpc") -> tuple[TransportOptions, Warnings]:
    """options_from_env over ``env`` only, with the warnings it gave."""
    warnings = Warnings()
    endpoint = GRPC if protocol == "grpc" else HTTP
    return options_from_env(endpoint, protocol, env=env, warn=warnings), warnings


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed certificate, its key, and both in one file, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed, so no certificate can be made")
    folder = tmp_path_factory.mktemp("pem")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=test"],
        check=True, capture_output=True, timeout=60,
    )
    both = folder / "both.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    return {"cert": cert, "key": key, "both": both}


def test_defaults_without_variables() -> None:
    """With no variable set, the options are the defaults and nothing is warned."""
    options, warnings = read({})
    assert options == TransportOptions(GRPC, "grpc")
    assert (options.headers, options.timeout, options.compression) == ((), 10.0, "none")
    assert options.insecure is None and options.certificate is None
    assert options.client_key is None and options.client_certificate is None
    assert warnings == []


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``env``, the process environment is read."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "3")
    assert options_from_env(GRPC, "grpc").timeout == 3.0


@pytest.mark.parametrize("prefix", ["OTEL_EXPORTER_OTLP_TRACES_", "OTEL_EXPORTER_OTLP_"])
def test_headers(prefix: str) -> None:
    """HEADERS is k=v,k2=v2: names lower-cased, URL-decoded, spaces around pairs dropped."""
    env = {prefix + "HEADERS": "Api-Key=s%20cr%3Dt , X-Tenant=a=b,empty=,,Bearer=x%2Cy"}
    options, warnings = read(env)
    assert dict(options.headers) == {
        "api-key": "s cr=t",
        "x-tenant": "a=b",
        "empty": "",
        "bearer": "x,y",
    }
    assert warnings == []


def test_headers_not_url_encoded_are_taken_as_written() -> None:
    """A pair with a space is not URL-encoded; like the SDK's liberal mode, it is kept raw."""
    options, warnings = read({"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Basic a%20b c"})
    assert dict(options.headers) == {"authorization": "Basic a%20b c"}
    assert warnings == []


def test_bad_header_entries_warn_once_without_the_value() -> None:
    """Entries that are not name=value, or decode to control characters, are skipped with
    one warning each that does not repeat the (possibly secret) value."""
    raw = "good=1,novalue,bad=x%0Ay,quote=a\"b"
    options, warnings = read({"OTEL_EXPORTER_OTLP_TRACES_HEADERS": raw})
    assert dict(options.headers) == {"good": "1"}
    assert len(warnings) == 3
    assert all(w.startswith("OTEL_EXPORTER_OTLP_TRACES_HEADERS: entry ") for w in warnings)
    assert all("x%0Ay" not in w and "a\"b" not in w for w in warnings)


@pytest.mark.parametrize("prefix", ["OTEL_EXPORTER_OTLP_TRACES_", "OTEL_EXPORTER_OTLP_"])
def test_timeout_is_in_seconds(prefix: str) -> None:
    """TIMEOUT is read in seconds, as the installed OpenTelemetry SDK reads it."""
    options, warnings = read({prefix + "TIMEOUT": " 2.5 "})
    assert options.timeout == 2.5
    assert warnings == []


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "nan", "inf", "1e999", "5s"])
def test_bad_timeout_warns_once_and_uses_ten_seconds(raw: str) -> None:
    """An unparsable, non-positive or infinite timeout warns once and falls back to 10 s."""
    options, warnings = read({"OTEL_EXPORTER_OTLP_TIMEOUT": raw})
    assert options.timeout == 10.0
    assert len(warnings) == 1
    assert warnings[0].startswith(f"OTEL_EXPORTER_OTLP_TIMEOUT={raw}: ")
    assert warnings[0].endswith("; using 10")


@pytest.mark.parametrize("prefix", ["OTEL_EXPORTER_OTLP_TRACES_", "OTEL_EXPORTER_OTLP_"])
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_compression_gzip_and_none(prefix: str, protocol: str) -> None:
    """COMPRESSION gzip or none, in any case, is taken for both protocols."""
    assert read({prefix + "COMPRESSION": " GZip "}, protocol)[0].compression == "gzip"
    assert read({prefix + "COMPRESSION": "none"}, protocol)[0].compression == "none"


def test_deflate_is_for_http_only() -> None:
    """deflate is taken for HTTP (the SDK's HTTP exporter has it) and rejected for gRPC."""
    env = {"OTEL_EXPORTER_OTLP_COMPRESSION": "deflate"}
    options, warnings = read(env, "http/protobuf")
    assert (options.compression, warnings) == ("deflate", [])
    options, warnings = read(env, "grpc")
    assert options.compression == "none"
    assert warnings == [
        "OTEL_EXPORTER_OTLP_COMPRESSION=deflate: grpc compression must be one of none, gzip; "
        "using none"
    ]


def test_unknown_compression_warns_once_and_uses_none() -> None:
    """An unknown compression warns once and sends uncompressed."""
    options, warnings = read({"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "brotli"}, "http/protobuf")
    assert options.compression == "none"
    assert len(warnings) == 1
    assert warnings[0].startswith("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION=brotli: ")
    assert warnings[0].endswith("; using none")


@pytest.mark.parametrize("prefix", ["OTEL_EXPORTER_OTLP_TRACES_", "OTEL_EXPORTER_OTLP_"])
def test_insecure(prefix: str) -> None:
    """INSECURE true/false (any case) sets gRPC's insecure; unset leaves it to the scheme."""
    assert read({prefix + "INSECURE": "TRUE"})[0].insecure is True
    assert read({prefix + "INSECURE": "false"})[0].insecure is False


def test_insecure_is_grpc_only() -> None:
    """INSECURE is not read for HTTP, where the scheme alone decides."""
    options, warnings = read({"OTEL_EXPORTER_OTLP_INSECURE": "true"}, "http/protobuf")
    assert (options.insecure, warnings) == (None, [])


def test_bad_insecure_warns_once_and_uses_the_scheme() -> None:
    """An INSECURE that is neither true nor false warns once and leaves it to the scheme."""
    options, warnings = read({"OTEL_EXPORTER_OTLP_INSECURE": "yes"})
    assert options.insecure is None
    assert warnings == ["OTEL_EXPORTER_OTLP_INSECURE=yes: must be true or false; "
                        "using the endpoint's scheme"]


@pytest.mark.parametrize("prefix", ["OTEL_EXPORTER_OTLP_TRACES_", "OTEL_EXPORTER_OTLP_"])
def test_certificate_files(prefix: str, pem: dict[str, Path]) -> None:
    """CERTIFICATE, CLIENT_CERTIFICATE and CLIENT_KEY give readable PEM file paths."""
    env = {
        prefix + "CERTIFICATE": str(pem["cert"]),
        prefix + "CLIENT_CERTIFICATE": str(pem["cert"]),
        prefix + "CLIENT_KEY": str(pem["key"]),
    }
    options, warnings = read(env, "http/protobuf")
    assert options.certificate == str(pem["cert"])
    assert options.client_certificate == str(pem["cert"])
    assert options.client_key == str(pem["key"])
    assert warnings == []


def test_client_certificate_with_its_key_in_the_same_file(pem: dict[str, Path]) -> None:
    """A client certificate file that also holds the key needs no CLIENT_KEY."""
    options, warnings = read({"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(pem["both"])})
    assert options.client_certificate == str(pem["both"])
    assert (options.client_key, warnings) == (None, [])


def test_unreadable_certificate_warns_once_and_uses_system_roots(tmp_path: Path) -> None:
    """A missing or unreadable CA file, or one with no certificate, warns once each and the
    system's trusted certificates are used."""
    for path in (tmp_path / "missing.pem", tmp_path):
        options, warnings = read({"OTEL_EXPORTER_OTLP_CERTIFICATE": str(path)})
        assert options.certificate is None
        assert len(warnings) == 1
        assert warnings[0].startswith(f"OTEL_EXPORTER_OTLP_CERTIFICATE={path}: cannot read it (")
        assert warnings[0].endswith("; using the system's trusted certificates")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    options, warnings = read({"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(junk)})
    assert options.certificate is None
    assert warnings == [f"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE={junk}: holds no PEM certificate; "
                        "using the system's trusted certificates"]


def test_bad_client_certificate_warns_once_and_uses_none(tmp_path: Path) -> None:
    """A client key without certificate, an unreadable one, or a pair that does not load,
    warns once and no client certificate is used."""
    junk = tmp_path / "junk.pem"
    junk.write_text("junk\n")
    cases = [
        {"OTEL_EXPORTER_OTLP_CLIENT_KEY": str(junk)},
        {"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(tmp_path / "missing.pem")},
        {"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(junk),
         "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(junk)},
        {"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(junk)},
    ]
    for env in cases:
        options, warnings = read(env, "http/protobuf")
        assert (options.client_certificate, options.client_key) == (None, None), env
        assert len(warnings) == 1, (env, warnings)
        assert warnings[0].startswith("OTEL_EXPORTER_OTLP_CLIENT_")
        assert warnings[0].endswith("; using no client certificate")


def test_traces_specific_variables_win(tmp_path: Path, pem: dict[str, Path]) -> None:
    """Every traces-specific variable takes precedence over its generic one."""
    other = tmp_path / "other.pem"
    other.write_bytes(pem["cert"].read_bytes())
    env = {
        "OTEL_EXPORTER_OTLP_HEADERS": "a=generic",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=traces",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "none",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip",
        "OTEL_EXPORTER_OTLP_INSECURE": "false",
        "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "true",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(other),
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(pem["cert"]),
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(other),
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": str(pem["both"]),
        "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(pem["key"]),
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": str(pem["both"]),
    }
    options, warnings = read(env)
    assert options.headers == (("b", "traces"),)
    assert (options.timeout, options.compression, options.insecure) == (2.0, "gzip", True)
    assert options.certificate == str(pem["cert"])
    assert options.client_certificate == options.client_key == str(pem["both"])
    assert warnings == []


def test_blank_traces_variable_falls_back_to_generic() -> None:
    """A traces-specific variable set to blanks counts as unset, as ``or`` does in the SDK."""
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": " ",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "4",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "",
        "OTEL_EXPORTER_OTLP_HEADERS": "k=v",
    }
    options, warnings = read(env)
    assert (options.timeout, options.headers, warnings) == (4.0, (("k", "v"),), [])


def test_bad_traces_value_uses_the_default_not_the_generic_value() -> None:
    """A bad traces-specific value falls back to the default, as the SDK does, and says so."""
    options, warnings = read({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "x",
                              "OTEL_EXPORTER_OTLP_TIMEOUT": "4"})
    assert options.timeout == 10.0
    assert len(warnings) == 1 and warnings[0].startswith("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=x")


def test_every_bad_variable_warns_exactly_once(tmp_path: Path) -> None:
    """With all variables bad at once, each warns once and nothing raises."""
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "oops",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "soon",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "zstd",
        "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "maybe",
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(tmp_path / "a"),
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": str(tmp_path / "b"),
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": str(tmp_path / "c"),
    }
    options, warnings = read(env)
    assert options == TransportOptions(GRPC, "grpc")
    assert sorted(w.split(":")[0].split("=")[0] for w in warnings) == sorted(
        name for name in env if not name.endswith("CLIENT_KEY")
    )


def test_warnings_go_to_logging_without_warn(caplog: pytest.LogCaptureFixture) -> None:
    """Without ``warn``, a bad value is a logging warning, not an exception."""
    with caplog.at_level(logging.WARNING, logger="proctrace._otlp.transport"):
        options = options_from_env(GRPC, "grpc", env={"OTEL_EXPORTER_OTLP_TIMEOUT": "x"})
    assert options.timeout == 10.0
    assert [r.getMessage() for r in caplog.records] == [
        "OTEL_EXPORTER_OTLP_TIMEOUT=x: not a number of seconds; using 10"
    ]


@settings(max_examples=200, deadline=None)
@given(
    protocol=st.sampled_from(["grpc", "http/protobuf"]),
    values=st.dictionaries(
        st.sampled_from([f"OTEL_EXPORTER_OTLP_{t}{s}" for t in ("", "TRACES_") for s in SUFFIXES]),
        st.text(max_size=30),
    ),
)
def test_never_raises_and_always_valid(protocol: str, values: dict[str, str]) -> None:
    """Whatever the variables hold, options_from_env returns valid options and does not raise."""
    warnings = Warnings()
    options = options_from_env(GRPC, protocol, env=values, warn=warnings)
    assert 0 < options.timeout < float("inf")
    assert options.compression in ("none", "gzip", "deflate")
    assert len(warnings) <= len(values) * 20


def test_options_reject_bad_values_and_hide_secrets_in_repr() -> None:
    """TransportOptions refuses unusable values; its repr shows neither userinfo nor header
    values."""
    for bad in (
        {"protocol": "http/json"},
        {"compression": "deflate"},
        {"timeout": 0},
        {"endpoint": "ftp://host:1"},
        {"endpoint": "http://:4317"},
        {"endpoint": "http://host:port"},
        {"headers": (("bad name", "v"),)},
        {"headers": (("k", "a\nb"),)},
    ):
        with pytest.raises(ValueError):
            TransportOptions(**{"endpoint": GRPC, "protocol": "grpc", **bad})  # type: ignore[arg-type]
    options = TransportOptions(
        "https://alice:s3cret@collector:4317", "grpc", headers=(("api-key", "t0ken"),)
    )
    text = repr(options)
    assert "collector:4317" in text and "api-key" in text
    assert "s3cret" not in text and "alice" not in text and "t0ken" not in text


def test_transport_construction_does_not_connect() -> None:
    """Making a Transport opens no connection, even to a port nothing listens on."""
    for protocol, endpoint in (("grpc", "http://127.0.0.1:9"), ("http/protobuf", "http://127.0.0.1:9/")):
        transport = Transport(TransportOptions(endpoint, protocol))
        assert transport.url == endpoint
        transport.close()


def test_transport_error_pickles_with_retryable() -> None:
    """A TransportError crosses a process boundary with its message and ``retryable``."""
    original = TransportError("HTTP 503 Service Unavailable", retryable=True)
    error = pickle.loads(pickle.dumps(original))
    assert (str(error), error.retryable) == ("HTTP 503 Service Unavailable", True)
