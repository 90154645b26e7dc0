"""The repository's docker-compose.yml (local Jaeger v2): valid compose, pinned, loopback only."""

from __future__ import annotations

import re
from typing import Any

import check_jsonschema
import pytest
from click.testing import CliRunner
from conftest import ROOT
from ruamel.yaml import YAML  # check-jsonschema's own YAML parser

COMPOSE_FILE = ROOT / "docker-compose.yml"


@pytest.fixture
def compose() -> dict[str, Any]:
    """The file, parsed into plain Python containers."""
    return YAML(typ="safe", pure=True).load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture
def jaeger(compose: dict[str, Any]) -> dict[str, Any]:
    """The file's `jaeger` service."""
    return compose["services"]["jaeger"]


def test_compose_file_matches_the_compose_spec_schema():
    """`check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml` accepts the
    file (run in-process through check-jsonschema's own command)."""
    result = CliRunner().invoke(
        check_jsonschema.main, ["--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)]
    )
    assert result.exit_code == 0, result.output
    assert "validation done" in result.output


def test_no_obsolete_version_key(compose):
    """The file has no top-level `version:` key (obsolete in the compose spec)."""
    assert "version" not in compose


def test_jaeger_image_is_pinned_v2_release(jaeger):
    """Service `jaeger` uses jaegertracing/jaeger pinned to an exact 2.x.y tag."""
    assert re.fullmatch(r"jaegertracing/jaeger:2\.\d+\.\d+", jaeger["image"]), jaeger["image"]


def test_ui_and_otlp_ports_published_on_loopback_only(jaeger):
    """The UI (16686) and OTLP (4317, 4318) ports, and nothing else, are published, each on
    127.0.0.1 only and on the same host port."""
    assert sorted(jaeger["ports"]) == sorted(
        f"127.0.0.1:{port}:{port}" for port in (16686, 4317, 4318)
    )


def test_healthcheck_has_test_command(jaeger):
    """The jaeger service defines a healthcheck with a non-empty `test` that is not disabled."""
    healthcheck = jaeger.get("healthcheck")
    assert isinstance(healthcheck, dict)
    assert not healthcheck.get("disable", False)
    test = healthcheck.get("test")
    assert test and test != ["NONE"]
