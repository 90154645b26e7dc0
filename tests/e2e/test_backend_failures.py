"""A dead, slow or black-holed backend never stalls the program and loses nothing silently."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from backends import FaultyBackend
from conftest import ROOT, by_name, clean_env

from proctrace._otlp import files as _otlpjson
from proctrace._otlp import otlpjson
from proctrace.testing import decode_request

PROGRAM = """
import multiprocessing, sys, time
from proctrace import traced

@traced
def task(i):
    time.sleep(0.05)

if __name__ == "__main__":
    ctx = multiprocessing.get_context("fork")
    time.sleep(0.5)  # a program that runs a little while, as programs do
    ps = [ctx.Process(target=task, args=(i,)) for i in range(8)]
    for p in ps: p.start()
    for p in ps: p.join()
"""


def _timed(tmp_path: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=clean_env(**env),
        capture_output=True, text=True, timeout=60,
    )
    return time.monotonic() - started, proc


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("mode", ["refuse", "stall", "drop"])
def test_a_failing_backend_adds_under_a_second_and_keeps_every_span(
    tmp_path, receiver, mode, protocol
):
    """Connection refused, 3 s per export, or no answer at all: the program's wall time grows
    by less than 1 s, and every span is in the fallback file, which one line names along with
    the command that sends it later; that command delivers them all."""
    baseline, proc = _timed(tmp_path, receiver.env())
    assert proc.returncode == 0, proc.stderr
    assert len(receiver.wait_for_spans(9)) == 9
    with FaultyBackend(mode, protocol) as backend:
        wall, proc = _timed(tmp_path, backend.env())
    assert proc.returncode == 0, proc.stderr
    if wall - baseline >= 1.0:
        # One sample each, beside another test worker's load: the machine's noise only ever
        # adds time, so both are timed once more and the least of each compared. A program
        # that really waits on the backend is as slow the second time.
        again, _ = _timed(tmp_path, receiver.env())
        with FaultyBackend(mode, protocol) as backend:
            wall_again, proc = _timed(tmp_path, backend.env())
        assert proc.returncode == 0, proc.stderr
        baseline, wall = min(baseline, again), min(wall, wall_again)
    assert wall - baseline < 1.0, (wall, baseline)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("proctrace:")]
    assert len(lines) == 1, lines
    match = re.search(r"kept in (\S+); send them later with: proctrace send (\S+)$", lines[0])
    assert match, lines[0]
    kept = tmp_path / match.group(1)
    assert match.group(1) == match.group(2)
    spans = [s for r in _otlpjson.read(str(kept)) for s in decode_request(otlpjson.to_protobuf(r))]
    assert sorted(s.name for s in spans) == ["prog"] + ["task"] * 8
    assert "Exception ignored" not in proc.stderr

    receiver.clear()
    sent = subprocess.run(
        [sys.executable, "-m", "proctrace", "send", str(kept), "--endpoint", receiver.endpoint],
        cwd=tmp_path, env=clean_env(PYTHONPATH=str(ROOT)), capture_output=True, text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    assert "sent 9 spans" in sent.stdout
    assert len(by_name(receiver.wait_for_spans(9))["task"]) == 8
    assert not kept.exists()


def test_send_keeps_the_file_when_the_backend_is_still_down(tmp_path, receiver):
    """`proctrace send` to a dead backend fails clearly (exit 1) and keeps the file."""
    with FaultyBackend("refuse") as backend:
        _timed(tmp_path, backend.env())
        kept = next((tmp_path / ".proctrace").glob("*-undelivered.jsonl"))
        sent = subprocess.run(
            [sys.executable, "-m", "proctrace", "send", str(kept), "--endpoint", backend.endpoint],
            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60,
        )
    assert sent.returncode == 1
    assert "not sent to" in sent.stderr and "the file is kept" in sent.stderr
    assert kept.exists()


def test_send_keeps_a_runs_trace_file_and_fails_on_lines_it_could_not_send(tmp_path, receiver):
    """`proctrace send` of a run's own trace file (to push it to a backend) delivers it and
    keeps it: it removed it, the run's only local copy (user trial). A file with a line it
    could not read is sent but for that line, kept, and the status is 1 (it was 0)."""
    run = subprocess.run(
        [sys.executable, "-m", "proctrace.examples.create"], cwd=tmp_path,
        env=clean_env(PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    (trace,) = (tmp_path / ".proctrace").glob("*.jsonl")
    command = [sys.executable, "-m", "proctrace", "send", "--endpoint", receiver.endpoint]
    sent = subprocess.run(
        [*command, str(trace)], cwd=tmp_path, env=clean_env(PYTHONPATH=str(ROOT)),
        capture_output=True, text=True, timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    count = len(receiver.wait_for_spans(1))
    assert f"sent {count} spans" in sent.stdout and trace.exists()
    broken = tmp_path / "broken-undelivered.jsonl"
    broken.write_bytes(trace.read_bytes() + b'{"resourceSpans": [\n')
    sent = subprocess.run(
        [*command, str(broken)], cwd=tmp_path, env=clean_env(PYTHONPATH=str(ROOT)),
        capture_output=True, text=True, timeout=60,
    )
    assert sent.returncode == 1, sent.stderr
    assert f"sent {count} spans" in sent.stdout and broken.exists()
    assert "is kept: 1 line could not be sent" in sent.stderr


def test_send_uses_the_otlp_headers_and_reports_a_rejection_as_such(tmp_path):
    """`proctrace send` sends OTEL_EXPORTER_OTLP_HEADERS, as the run's exporter would have;
    a backend that answers 401 is reported as a rejection, and the file is kept."""
    import http.server
    import threading

    seen: list[str] = []

    class Picky(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(401 if len(seen) == 1 else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Picky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with FaultyBackend("refuse") as backend:
        _timed(tmp_path, backend.env())
    kept = next((tmp_path / ".proctrace").glob("*-undelivered.jsonl"))
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    env = clean_env(OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer%20abc")
    args = [sys.executable, "-m", "proctrace", "send", str(kept), "--endpoint", endpoint,
            "--protocol", "http/protobuf"]
    first = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert first.returncode == 1 and "not sent to" in first.stderr and kept.exists()
    second = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    server.shutdown()
    assert seen[0] == "Bearer abc" and not kept.exists()
