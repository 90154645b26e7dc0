"""Who may talk to whom: only the run's own user reaches its collector and trace files."""

from __future__ import annotations

import os
import stat

import pytest

PROGRAM = """
import multiprocessing, os, socket, sys
import proctrace
from proctrace import traced
from proctrace._child import wire as _wire

@traced
def task():
    pass

def intruder(path, trace_dir, result):
    os.setgid(65534)
    os.setuid(65534)  # nobody
    outcome = []
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(b'{"k":"span","trace":"' + b"1" * 32 + b'","span":"' + b"2" * 16 + b'"}\\n')
        outcome.append("connected")
    except OSError as exc:
        outcome.append(type(exc).__name__)
    try:
        os.listdir(trace_dir)
        outcome.append("listed")
    except OSError as exc:
        outcome.append(type(exc).__name__)
    result.put(outcome)

if __name__ == "__main__":
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=task); p.start(); p.join()
    path = _wire.address()
    print(oct(os.stat(os.path.dirname(path)).st_mode & 0o777))
    result = ctx.SimpleQueue()
    p = ctx.Process(target=intruder, args=(path, ".proctrace", result))
    p.start(); p.join()
    print(" ".join(result.get()))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another local user")
def test_another_user_can_neither_reach_the_collector_nor_read_traces(run_script, tmp_path):
    """The collector's socket is in a 0700 directory, and the trace directory is 0700 with
    0600 files: another local user can neither inject spans nor read them."""
    run = run_script(PROGRAM)
    assert run.returncode == 0, run.stderr
    mode, outcome = run.stdout.split("\n")[:2]
    assert mode == "0o700"
    assert outcome == "PermissionError PermissionError"
    (trace,) = (tmp_path / ".proctrace").glob("*.jsonl")
    assert stat.S_IMODE(trace.stat().st_mode) == 0o600
    assert "1" * 32 not in trace.read_text()
