"""A bad value in the environment never breaks the program: one warning naming the variable,
its value (never a secret) and what proctrace does instead, and the fallback applies."""

from __future__ import annotations

import pytest

from proctrace._core import fromenv
from proctrace._core.config import ConfigurationError, Settings, resolve
from proctrace._otlp.options import options_from_env


def read(env: dict[str, str], **arguments: object) -> tuple[Settings, list[str]]:
    """resolve() over ``env`` only, with the warnings it gave."""
    warnings: list[str] = []
    settings = resolve(env=env, warn=warnings.append, **arguments)  # type: ignore[arg-type]
    return settings, warnings


FILE = "writing spans to the local trace file instead"

# (variable, bad value, the one warning (exactly), what the settings hold instead)
BAD = [
    ("OTEL_SERVICE_NAME", "  ", "OTEL_SERVICE_NAME='  ' is blank; using ",
     lambda s: s.service_name not in ("", "  ")),
    ("OTEL_TRACES_EXPORTER", "zipkin",
     f"OTEL_TRACES_EXPORTER=zipkin is not supported (otlp, console, none); {FILE}",
     lambda s: s.exporters == ("file",) and s.endpoint is None),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317",
     "OTEL_EXPORTER_OTLP_ENDPOINT=localhost:4317 is not a URL like http://localhost:4317 (it "
     f"needs an http:// or https:// scheme and a host); {FILE}",
     lambda s: s.exporters == ("file",) and s.endpoint is None),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://host:99999",
     "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://host:99999 is not a valid URL (Port out of "
     f"range 0-65535); {FILE}",
     lambda s: s.exporters == ("file",)),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon",
     "OTEL_EXPORTER_OTLP_PROTOCOL=carrier-pigeon is not supported (grpc, http/protobuf); "
     "using grpc",
     lambda s: s.protocol == "grpc"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json",
     "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json is not supported (grpc, http/protobuf); "
     "using http/protobuf",
     lambda s: s.protocol == "http/protobuf"),
    ("OTEL_SDK_DISABLED", "1", "OTEL_SDK_DISABLED=1 is not true or false; tracing stays on",
     lambda s: not s.disabled),
    ("OTEL_TRACES_SAMPLER", "xray",
     "OTEL_TRACES_SAMPLER=xray is not supported (always_on, always_off, traceidratio, "
     "parentbased_always_on, parentbased_always_off, parentbased_traceidratio); using "
     "parentbased_always_on",
     lambda s: s.sampler == "parentbased_always_on"),
    # Only a value no path can be is the environment's error; a directory that cannot be
    # used is passed over by the agent, which says so in its exit line (test_security).
    ("PROCTRACE_DIR", "bad\0dir",
     "PROCTRACE_DIR='bad\\x00dir' contains a NUL character; using .proctrace",
     lambda s: s.trace_dir.endswith("/.proctrace")),
    ("PROCTRACE_MAX_REPR", "many",
     "PROCTRACE_MAX_REPR=many is not a whole number of 8 or more; using 256",
     lambda s: s.max_repr == 256),
    ("PROCTRACE_MAX_REPR", "3",
     "PROCTRACE_MAX_REPR=3 is not a whole number of 8 or more; using 256",
     lambda s: s.max_repr == 256),
    ("PROCTRACE_LOG_FORMAT", "xml",
     "PROCTRACE_LOG_FORMAT=xml is not supported (auto, json, console); using auto",
     lambda s: s.log_format == "auto"),
    ("PROCTRACE_LOG_EVENTS", "perhaps", "PROCTRACE_LOG_EVENTS=perhaps is not true or false; "
     "using true", lambda s: s.log_events),
    ("PROCTRACE_QUIET", "maybe", "PROCTRACE_QUIET=maybe is not true or false; using false",
     lambda s: not s.quiet),
]


@pytest.mark.parametrize(("name", "value", "warning", "holds"), BAD, ids=[b[0] for b in BAD])
def test_each_bad_variable_is_one_warning_and_its_fallback(name, value, warning, holds):
    """Every variable proctrace reads: a bad value is one warning (variable, value, what
    instead), never an exception, and the settings hold the fallback."""
    settings, warnings = read({name: value})
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(warning), warnings[0]
    assert holds(settings)


def test_the_sampler_argument_falls_back_to_one():
    """A ratio that is not one (the specification's fallback is 1.0)."""
    for raw in ("half", "1.5", "nan"):
        settings, warnings = read(
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": raw}
        )
        assert (settings.sampler, settings.sampler_ratio) == ("traceidratio", 1.0)
        assert warnings == [
            f"OTEL_TRACES_SAMPLER_ARG={raw} is not a ratio between 0 and 1; using 1.0"
        ]


def test_good_values_give_no_warning():
    """Nothing to say about values proctrace can use, blank ones included."""
    env = {
        "OTEL_SERVICE_NAME": "svc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "HTTP/protobuf",
        "OTEL_TRACES_EXPORTER": "otlp, console",
        "OTEL_SDK_DISABLED": "False",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "PROCTRACE_MAX_REPR": "64",
        "PROCTRACE_LOG_FORMAT": "JSON",
        "PROCTRACE_LOG_EVENTS": "off",
        "PROCTRACE_QUIET": "yes",
        "PROCTRACE_DIR": "traces",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
    }
    settings, warnings = read(env)
    assert warnings == []
    assert settings.exporters == ("otlp", "console")
    assert settings.endpoint == "https://collector:4318/v1/traces"
    assert (settings.quiet, settings.log_events, settings.max_repr) == (True, False, 64)


@pytest.mark.parametrize("value", ["true", "TRUE", " True "])
def test_only_true_disables_the_sdk(value):
    """OTEL_SDK_DISABLED as the specification says: true, in any case, and nothing else."""
    assert read({"OTEL_SDK_DISABLED": value})[0].disabled
    for other in ("1", "yes", "on"):
        settings, warnings = read({"OTEL_SDK_DISABLED": other})
        assert not settings.disabled and len(warnings) == 1
    assert read({"OTEL_SDK_DISABLED": ""}) == read({})


def test_an_unknown_exporter_among_known_ones_is_left_out():
    """console,zipkin: console is kept; the warning names zipkin and says what happens."""
    settings, warnings = read({"OTEL_TRACES_EXPORTER": "console,zipkin"})
    assert settings.exporters == ("console",)
    assert warnings == [
        "OTEL_TRACES_EXPORTER=console,zipkin: zipkin is not supported (otlp, console, none); "
        "printing spans on stdout instead"
    ]


def test_an_unknown_exporter_with_an_endpoint_sends_there():
    """With an endpoint set, an unusable exporter means the default for it: OTLP."""
    settings, warnings = read(
        {"OTEL_TRACES_EXPORTER": "jaeger", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}
    )
    assert (settings.exporters, settings.endpoint) == (("otlp",), "http://c:4317")
    assert warnings[0].endswith("sending spans to http://c:4317 instead")


def test_a_bad_endpoint_never_sends_to_a_collector_nobody_chose():
    """OTEL_TRACES_EXPORTER=otlp with a bad endpoint writes the trace file (spans kept for
    `proctrace send`), not to localhost; configure(exporter="otlp") does get the default."""
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}
    settings, warnings = read(env)
    assert (settings.exporters, settings.endpoint) == (("file",), None)
    assert len(warnings) == 1 and warnings[0].endswith(FILE)
    settings, warnings = read(env, exporter="otlp")
    assert settings.endpoint == "http://localhost:4317"
    assert warnings[0].endswith("sending spans to http://localhost:4317 instead")
    settings, warnings = read(env, exporter="console")
    assert warnings[0].endswith("; ignoring it")


def test_endpoint_userinfo_is_never_shown():
    """A password in an endpoint stays out of the warning and of the error."""
    for endpoint in ("http://user:s3cret@host:99999", "ftp://user:s3cret@host", "http://u:s3cret@[::1"):
        _, warnings = read({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
        assert len(warnings) == 1 and "s3cret" not in warnings[0] and "***@" in warnings[0]
        with pytest.raises(ConfigurationError) as caught:
            resolve(env={}, endpoint=endpoint)
        assert "s3cret" not in str(caught.value)


def test_header_values_are_never_shown():
    """The transport options warn (and carry on) without repeating a header's value."""
    warnings: list[str] = []
    options_from_env(
        "http://c:4317", "grpc", env={"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cret\x01x"},
        warn=warnings.append,
    )
    assert len(warnings) == 1 and "s3cret" not in warnings[0]
    assert "OTEL_EXPORTER_OTLP_HEADERS" in warnings[0]


def test_arguments_still_raise_and_win_over_a_bad_variable():
    """configure()'s own bad value is a ConfigurationError; a good argument makes the bad
    variable irrelevant (no warning)."""
    with pytest.raises(ConfigurationError):
        resolve(env={}, warn=lambda line: None, exporter="zipkin")
    settings, warnings = read({"OTEL_TRACES_EXPORTER": "zipkin"}, exporter="console")
    assert settings.exporters == ("console",) and warnings == []


def test_quiet_rides_in_the_settings():
    """PROCTRACE_QUIET and configure(quiet=...) reach the carrier's plain data."""
    settings, _ = read({"PROCTRACE_QUIET": "true"})
    assert settings.quiet and Settings.from_dict(settings.to_dict()).quiet
    assert not read({"PROCTRACE_QUIET": "true"}, quiet=False)[0].quiet


def test_the_default_warning_is_one_stderr_line_once_per_process(capsys, monkeypatch):
    """Settings are read more than once in a program: each problem is said once."""
    monkeypatch.setattr(fromenv, "_warned", set())
    for _ in range(3):
        resolve(env={"OTEL_TRACES_EXPORTER": "zipkin", "PROCTRACE_LOG_FORMAT": "xml"})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith("proctrace: ") for line in lines)


def test_odd_values_are_shown_quoted_and_short():
    """Control characters are shown escaped, long values cut."""
    _, warnings = read({"OTEL_TRACES_EXPORTER": "zip\nkin"})
    assert "'zip\\nkin'" in warnings[0]
    _, warnings = read({"PROCTRACE_LOG_FORMAT": "x" * 500})
    assert len(warnings[0]) < 200


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@127.0.0.1:1/", "https://***@127.0.0.1:1/"),
        ("http://a:b@h:4318/v1/traces", "http://***@h:4318/v1/traces"),
        ("http://a:b@c@h:4317", "http://***@h:4317"),  # an @ in the password too
        ("http://alice:s3cr#t@collector:4318", "http://***@collector:4318"),  # raw # ...
        ("http://user:pa/ss@host:4318/v1/traces", "http://***@host:4318/v1/traces"),  # ... /
        ("http://u:a?b@host:4317", "http://***@host:4317"),  # ... and ?
        ("http://h:4318/p@x", "http://***@x"),  # an @ of the path: hidden too, harmlessly
        ("user:pw@host:1", "***@host:1"),
        ("http://h:1", "http://h:1"),
    ],
)
def test_an_endpoint_is_shown_without_its_userinfo(url, shown):
    from proctrace._core.fromenv import public_url

    assert public_url(url) == shown


@pytest.mark.parametrize(
    "url",
    ["http://alice:s3cr#t@collector:4318", "http://alice:s3cr:x@collector:4318",
     "http://alice:s3cr/t@collector:4318"],
)
def test_a_bad_endpoint_is_described_without_its_password(url):
    """An endpoint whose password holds a raw `#` or `/` does not parse as a URL (one with a
    raw `:` does); the warning names it with its userinfo hidden, and urllib's own words
    (which quote the part it could not read: the password's) are left out."""
    from proctrace._core.fromenv import endpoint_problem, public_url

    problem = endpoint_problem(url)
    assert "s3cr" not in (problem or "") + public_url(url)


def test_secret_query_values_of_the_endpoint_are_hidden_wherever_it_is_shown():
    """``?api_key=...`` in the endpoint: hidden in public_url() and in the transport's own
    description of the endpoint (which a failed export's warning quotes)."""
    from proctrace._core.fromenv import public_url

    url = "http://user:pw@collector:4318/otlp?api_key=SEKRET42&tenant=a"
    assert public_url(url) == "http://***@collector:4318/otlp?api_key=[REDACTED]&tenant=a"
    for protocol in ("http/protobuf", "grpc"):
        options = options_from_env("http://collector:4318/v1/traces?token=T0K", protocol, {})
        assert "T0K" not in repr(options) and "token=[REDACTED]" in repr(options)


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.name=billing"},
         "billing"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=my%20svc"}, "my svc"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=billing", "OTEL_SERVICE_NAME": "orders"},
         "orders"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name="}, "script"),
    ],
)
def test_the_service_name_comes_from_the_resource_attributes_too(env, name):
    """The specification's order: OTEL_SERVICE_NAME, then service.name in
    OTEL_RESOURCE_ATTRIBUTES, then the default (the script's name)."""
    assert fromenv.service_name(env, lambda: "script", lambda line: None) == name
