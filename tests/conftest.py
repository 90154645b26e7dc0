"""Shared fixtures: a real OTLP receiver, and traced programs run as real processes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proctrace.testing import OTLPReceiver, ReceivedSpan

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("fork", "spawn", "forkserver")


@pytest.fixture(params=METHODS)
def method(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per start method."""
    return str(request.param)


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    """A gRPC OTLP receiver in the test process."""
    with OTLPReceiver("grpc") as r:
        yield r


@pytest.fixture(params=["grpc", "http/protobuf"])
def any_receiver(request: pytest.FixtureRequest) -> Iterator[OTLPReceiver]:
    """A real OTLP receiver, once per protocol."""
    with OTLPReceiver(str(request.param)) as r:
        yield r


@dataclasses.dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines on stderr (each must be a whole JSON object)."""
        out = []
        for line in self.stderr.splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [entry for entry in self.logs if entry.get("event") == name]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROCTRACE_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


@pytest.fixture
def run_script(tmp_path: Path) -> Any:
    """Write ``source`` to a script in a fresh directory and run it; returns a Run."""

    def run(
        source: str,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        name: str = "prog.py",
    ) -> Run:
        script = tmp_path / name
        script.write_text(textwrap.dedent(source))
        proc = subprocess.run(
            [sys.executable, str(script), *args],
            cwd=tmp_path,
            env=clean_env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return run


def by_name(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    out: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def settle(receiver: OTLPReceiver, count: int) -> list[ReceivedSpan]:
    """Exactly ``count`` spans: wait for them, then check nothing more arrives."""
    spans = receiver.wait_for_spans(count, timeout=15)
    assert len(spans) == count, [s.name for s in spans]
    return spans
