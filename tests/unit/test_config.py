"""Settings from the OTEL_* variables and configure(): defaults, precedence and clear errors."""

from __future__ import annotations

import pytest

from proctrace._core.config import ConfigurationError, Settings, resolve


def test_no_endpoint_and_no_exporter_means_the_local_trace_file():
    """The embedded default needs nothing configured."""
    settings = resolve(env={})
    assert settings.exporters == ("file",)
    assert settings.endpoint is None
    assert settings.protocol == "grpc"
    assert settings.trace_dir.endswith(".proctrace")


def test_an_endpoint_alone_selects_otlp_and_http_gets_the_traces_path():
    """OTEL_EXPORTER_OTLP_ENDPOINT implies otlp; for http/protobuf /v1/traces is appended."""
    grpc = resolve(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert (grpc.exporters, grpc.endpoint) == (("otlp",), "http://collector:4317")
    http = resolve(
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
    )
    assert http.endpoint == "http://collector:4318/v1/traces"


def test_the_traces_endpoint_wins_and_is_used_as_given():
    """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is taken verbatim, over the generic endpoint."""
    settings = resolve(
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:9999/custom",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
    )
    assert settings.endpoint == "http://b:9999/custom"


def test_arguments_win_over_the_environment():
    """configure() arguments override variables."""
    settings = resolve(
        env={"OTEL_SERVICE_NAME": "env", "OTEL_TRACES_EXPORTER": "console"},
        service_name="arg",
        exporter="none",
    )
    assert (settings.service_name, settings.exporters) == ("arg", ("none",))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"protocol": "carrier-pigeon"}, "protocol 'carrier-pigeon'"),
        ({"exporter": "zipkin"}, "exporter zipkin"),
        ({"endpoint": "localhost:4317"}, "endpoint='localhost:4317'"),
        ({"endpoint": "http://host:99999"}, "Port out of range"),
        ({"max_repr": 3}, "max_repr"),
        ({"log_format": "xml"}, "log format 'xml'"),
        ({"sampler": "sometimes"}, "sampler 'sometimes'"),
    ],
)
def test_bad_arguments_raise_one_clear_error_naming_the_setting(arguments, message):
    """Each malformed configure() argument is a ConfigurationError whose message names it (a
    bad value in the environment warns instead: tests/unit/test_config_env.py)."""
    with pytest.raises(ConfigurationError, match=message):
        resolve(env={}, **arguments)


def test_sdk_disabled_is_read_from_the_environment():
    """OTEL_SDK_DISABLED=true disables everything."""
    assert resolve(env={"OTEL_SDK_DISABLED": "true"}).disabled
    assert not resolve(env={"OTEL_SDK_DISABLED": "false"}).disabled


def test_settings_survive_a_round_trip_as_plain_data():
    """Settings travel to children as a plain dict."""
    settings = resolve(env={}, redact=["pin"], exporter=["console", "otlp"])
    assert Settings.from_dict(settings.to_dict()) == settings


@pytest.mark.parametrize(
    "sampler, ratio, expected",
    [
        ("always_off", 1.0, False),
        ("traceidratio", 0.0, False),
        ("traceidratio", 1e-30, False),  # rounds to a bound of 0: no trace id is below it
        ("traceidratio", 1e-12, True),
        ("always_on", 1.0, True),
        ("parentbased_always_off", 1.0, True),  # a sampled parent handed in is followed
        ("parentbased_traceidratio", 0.0, True),
        ("parentbased_always_on", 1.0, True),
    ],
)
def test_can_sample_is_false_only_where_no_trace_can_ever_be_sampled(sampler, ratio, expected):
    from proctrace._core import sampling

    assert sampling.can_sample(sampler, ratio) is expected
    if not expected:  # and decide() agrees, whatever the trace id and the parent
        for trace_id in ("0" * 32, "f" * 32, "4bf92f3577b34da6a3ce929d0e0e4736"):
            for parent in (None, True, False):
                assert not sampling.decide(sampler, ratio, trace_id, parent)


def test_a_second_configure_keeps_the_names_the_first_gave_to_redact(monkeypatch):
    """``redact=`` adds names: a later configure() (say, of the service name) keeps them
    (it replaced them, and the argument was recorded in clear)."""
    from proctrace._starter import run

    monkeypatch.setattr(run, "_configured", None)
    monkeypatch.setattr(run, "active", lambda: False)
    run.configure(resolve(redact=("pin",)))
    run.configure(resolve(service_name="checkout", redact=("card",)))
    assert run.settings().redact == ("pin", "card")
    assert run.settings().service_name == "checkout"
