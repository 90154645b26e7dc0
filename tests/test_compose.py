"""Checks for the repository's docker-compose.yml (local Jaeger v2)."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from jsonschema.validators import validator_for
from ruamel.yaml import YAML

REPO_ROOT = Path(__file__).parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
REQUIRED_PORTS = (16686, 4317, 4318)
LOOPBACK = "127.0.0.1"
IMAGE_RE = re.compile(r"^jaegertracing/jaeger:2\.\d+\.\d+$")
CLI = (sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec")


# --------------------------------------------------------------------------- helpers


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """Parse a compose file into plain Python containers."""
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def compose_schema() -> dict[str, Any]:
    """The compose-spec JSON schema vendored by check-jsonschema."""
    resource = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath(
        "compose-spec.json"
    )
    return json.loads(resource.read_text(encoding="utf-8"))


def schema_errors(document: Any) -> list[jsonschema.ValidationError]:
    """All compose-spec schema violations of ``document`` (empty when valid)."""
    schema = compose_schema()
    cls = validator_for(schema)
    cls.check_schema(schema)
    return list(cls(schema).iter_errors(document))


def _port_range(text: str) -> list[int]:
    start, _, end = text.partition("-")
    return list(range(int(start), int(end or start) + 1))


def parse_port(entry: Any) -> list[tuple[str, int]]:
    """Return ``(host_ip, container_port)`` pairs for one ``ports`` entry.

    ``host_ip`` is ``""`` when the entry does not name one, which means Docker
    publishes on every interface. Handles the short syntax
    (``[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]``, including ``[::1]`` IPv6
    host addresses and port ranges) and the long (mapping) syntax.
    """
    if isinstance(entry, dict):
        host_ip = str(entry.get("host_ip", ""))
        return [(host_ip, port) for port in _port_range(str(entry["target"]))]
    text = str(entry).split("/", 1)[0]
    host_ip = ""
    if text.startswith("["):  # IPv6 host address: [::1]:8080:80
        end = text.index("]")
        host_ip, text = text[1:end], text[end + 2 :]
        parts = text.split(":")
    else:
        parts = text.split(":")
        if len(parts) == 3:
            host_ip = parts[0]
    return [(host_ip, port) for port in _port_range(parts[-1])]


def binding_problems(service: dict[str, Any], required=REQUIRED_PORTS) -> list[str]:
    """Reasons ``service`` does not publish each required port on 127.0.0.1 only.

    Every entry in ``ports`` must name 127.0.0.1 as host address, and every
    port in ``required`` must be published by at least one entry.
    """
    problems: list[str] = []
    published: set[int] = set()
    for entry in service.get("ports") or []:
        for host_ip, port in parse_port(entry):
            if host_ip != LOOPBACK:
                where = host_ip or "all interfaces"
                problems.append(f"{entry!r}: container port {port} bound to {where}")
            else:
                published.add(port)
    problems.extend(
        f"container port {p} not published on {LOOPBACK}" for p in required if p not in published
    )
    return problems


@pytest.fixture
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture
def jaeger(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]["jaeger"]


# --------------------------------------------------------------------------- tests


def test_compose_file_matches_compose_spec_schema(compose):
    """docker-compose.yml validates against the compose-spec schema vendored by check-jsonschema."""
    errors = schema_errors(compose)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_check_jsonschema_cli_accepts_compose_file():
    """`check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml` exits 0."""
    result = subprocess.run(
        [*CLI, str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_obsolete_version_key(compose):
    """The file has no top-level `version:` key (obsolete in the compose spec)."""
    assert "version" not in compose


def test_jaeger_image_is_pinned_v2_release(jaeger):
    """Service `jaeger` uses jaegertracing/jaeger pinned to an exact 2.x.y tag."""
    assert IMAGE_RE.fullmatch(jaeger["image"]), jaeger["image"]


def test_ui_and_otlp_ports_published_on_loopback_only(jaeger):
    """Ports 16686, 4317 and 4318 are published, and every published port binds 127.0.0.1."""
    assert binding_problems(jaeger) == []


def test_healthcheck_has_test_command(jaeger):
    """The jaeger service defines a healthcheck with a non-empty `test` that is not disabled."""
    healthcheck = jaeger.get("healthcheck")
    assert isinstance(healthcheck, dict)
    assert not healthcheck.get("disable", False)
    test = healthcheck.get("test")
    assert test and test != ["NONE"]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("127.0.0.1:16686:16686", [("127.0.0.1", 16686)]),
        ("127.0.0.1::4317", [("127.0.0.1", 4317)]),
        ("8080:80/udp", [("", 80)]),
        (4318, [("", 4318)]),
        ("[::1]:4318:4318", [("::1", 4318)]),
        ("127.0.0.1:9000-9001:9000-9001", [("127.0.0.1", 9000), ("127.0.0.1", 9001)]),
        ({"target": 4317, "published": "4317", "host_ip": "127.0.0.1"}, [("127.0.0.1", 4317)]),
        ({"target": 4317, "published": "4317"}, [("", 4317)]),
    ],
)
def test_parse_port_short_and_long_syntax(entry, expected):
    """parse_port extracts host address and container port from short and long port syntax."""
    assert parse_port(entry) == expected


def test_binding_check_rejects_all_interfaces(compose):
    """A copy of the document with a port bound to 0.0.0.0 (or to no host address) fails.

    Checked through the binding-check helper, for short and long port syntax.
    """
    for bad in ("0.0.0.0:4317:4317", "4317:4317", {"target": 4317, "published": "4317"}):
        doc = copy.deepcopy(compose)
        ports = doc["services"]["jaeger"]["ports"]
        ports[:] = [p for p in ports if 4317 not in [port for _, port in parse_port(p)]] + [bad]
        problems = binding_problems(doc["services"]["jaeger"])
        assert problems, bad
        assert any("4317" in p for p in problems)


def test_binding_check_rejects_missing_port(compose):
    """A copy of the document that drops the OTLP HTTP port fails the binding check."""
    doc = copy.deepcopy(compose)
    ports = doc["services"]["jaeger"]["ports"]
    ports[:] = [p for p in ports if 4318 not in [port for _, port in parse_port(p)]]
    expected = [f"container port 4318 not published on {LOOPBACK}"]
    assert binding_problems(doc["services"]["jaeger"]) == expected


def test_schema_rejects_unknown_service_key(compose):
    """A copy with a misspelt key (`services.jaeger.imagee`) fails schema validation."""
    doc = copy.deepcopy(compose)
    doc["services"]["jaeger"]["imagee"] = doc["services"]["jaeger"].pop("image")
    errors = schema_errors(doc)
    assert errors
    assert any("imagee" in e.message for e in errors)


def test_check_jsonschema_cli_rejects_invalid_compose_file(compose, tmp_path):
    """The check-jsonschema CLI exits non-zero for a compose file with an unknown service key."""
    doc = copy.deepcopy(compose)
    doc["services"]["jaeger"]["imagee"] = doc["services"]["jaeger"].pop("image")
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(json.dumps(doc), encoding="utf-8")  # JSON is valid YAML
    result = subprocess.run(
        [*CLI, str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
