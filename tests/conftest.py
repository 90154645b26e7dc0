"""Shared fixtures: a real OTLP receiver, and traced programs run as real processes.

Tests live in ``unit/`` (no child process, no subprocess, no receiver) or ``e2e/`` (real
processes or receivers); each is marked ``unit`` or ``e2e`` after its directory, so
``pytest -m unit`` runs the fast half alone. Every test leaves the test process as it
found it: whatever proctrace patched or switched on in it is undone afterwards.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proctrace.testing import OTLPReceiver, ReceivedSpan

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
METHODS = ("fork", "spawn", "forkserver")
# settle(): how long the receiver must stay quiet after the expected spans arrived.
QUIET = 0.05  # the program has exited, so its agent has already exported what it had
KINDS = {
    "unit": "runs no child process, no subprocess and no receiver (tests/unit/)",
    "e2e": "starts real processes or OTLP receivers (tests/e2e/)",
}
SLOW = (
    "slow: 2.5-30 s each on 2 cores (a Dask scheduler and workers started as separate "
    "processes, 100,000 spans in a browser and in the view's model, 30,000 pool tasks into "
    "the trace file, the benchmark scripts' quick run, the record and reader fuzzers, the "
    "encoders against the generated classes); left out of the default run (pyproject's "
    "addopts), run with `pytest -m slow`; CI runs both"
)


def pytest_configure(config: pytest.Config) -> None:
    for marker, meaning in KINDS.items():
        config.addinivalue_line("markers", f"{marker}: {meaning}")
    config.addinivalue_line("markers", SLOW)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test ``unit`` or ``e2e`` after the directory it lives in."""
    for item in items:
        path = Path(str(item.path)).resolve()
        kind = path.relative_to(TESTS).parts[0] if path.is_relative_to(TESTS) else None
        if kind not in KINDS:
            raise pytest.UsageError(
                f"{item.nodeid}: tests belong in tests/unit/ or tests/e2e/, not {path.parent}"
            )
        item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(autouse=True)
def _proctrace_undone() -> Iterator[None]:
    """After each test, undo what proctrace patched or switched on in the test process."""
    yield
    reset_proctrace()


def reset_proctrace() -> None:
    """The test process as if proctrace had never been used in it: every hook undone and every
    switch off, the starter's configure() settings and run gone (an active run finished),
    its import hooks removed, and OpenTelemetry's global tracer provider unset if it was
    proctrace's own."""
    from proctrace._hooks import install
    from proctrace._starter import run

    install.reset()
    run._at_exit()  # a run started here ends as at exit: its agent stops, its directory goes
    run._runtime = run._configured = None  # also a run inherited from another pid
    sys.meta_path[:] = [finder for finder in sys.meta_path if not _is_proctrace(finder)]
    _reset_tracer_provider()
    _reset_program_routes()


def _reset_program_routes() -> None:
    """Forget the routes of the program's own API spans and log records (``follow_program``),
    and put back the logging record factory and ``Logger.makeRecord`` if proctrace set them."""
    from proctrace._child import follow, forkplan, logs
    from proctrace._child import span as child_span
    from proctrace._starter import carrier

    follow._program.clear()
    child_span._api_callbacks.clear()
    child_span._watching = False  # its import hook went with the others above
    logs._watching_structlog = False  # so did this one
    carrier._routes.clear()  # the fork children's routes and plans, of a run now gone
    forkplan._plans.clear()
    stdlog = sys.modules.get("proctrace._child.stdlog")
    if stdlog is not None:
        stdlog.uninstall()


def _is_proctrace(obj: object) -> bool:
    return type(obj).__module__.startswith("proctrace.")


def _reset_tracer_provider() -> None:
    """Undo proctrace's provider and its set_tracer_provider wrapper, if it installed them.

    The API sets its global provider once per process; this resets it the way
    OpenTelemetry's own test utilities do (``reset_trace_globals``).
    """
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return
    wrapper = trace.set_tracer_provider
    if getattr(wrapper, "__proctrace__", False):
        trace.set_tracer_provider = inspect.getclosurevars(wrapper).nonlocals["original"]
    if _is_proctrace(getattr(trace, "_TRACER_PROVIDER", None)):
        from opentelemetry.util._once import Once

        trace._TRACER_PROVIDER = None
        trace._TRACER_PROVIDER_SET_ONCE = Once()


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
    """Exactly ``count`` spans: wait for them, then check that nothing more arrives while the
    receiver stays quiet for ``QUIET`` seconds."""
    spans = receiver.wait_for_spans(count, timeout=15)
    assert len(spans) == count, [s.name for s in spans]
    time.sleep(QUIET)
    later = receiver.spans
    assert len(later) == count, f"{len(later) - count} more after {QUIET} s: " + str(
        [s.name for s in later[count:]]
    )
    return spans
