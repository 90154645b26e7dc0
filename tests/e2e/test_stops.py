"""Production stops: SIGTERM, SIGHUP or SIGINT to the whole process group (docker stop,
systemd, Kubernetes, a closed terminal, Ctrl-C) or to the main process alone, at random
points of a traced program's life. Every process's span leaves the machine, ended, once."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from backends import FaultyBackend
from conftest import clean_env

PROGRAM = r"""
import multiprocessing, os, sys, time
from proctrace import traced

@traced
def busy(i, seconds):
    print("child", os.getpid(), flush=True)
    time.sleep(seconds)

@traced
def square(x):
    time.sleep(0.002)
    return x * x

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    seconds = float(sys.argv[2])
    children = [ctx.Process(target=busy, args=(i, seconds), name=f"busy-{i}") for i in range(2)]
    for p in children:
        p.start()
    with ctx.Pool(2) as pool:
        print("pool", flush=True)
        for n, _ in enumerate(pool.imap(square, range(int(seconds * 300)), chunksize=1)):
            if n == 5:
                print("tasks", flush=True)  # some tasks finished, others running
    for p in children:
        p.join()
    print("done", flush=True)
"""


def _start(tmp_path: Path, method: str, seconds: float, env: dict[str, str]) -> subprocess.Popen:
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    return subprocess.Popen(
        [sys.executable, str(script), method, str(seconds)],
        cwd=tmp_path, env=clean_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,  # its own process group, as under a supervisor
        # The signals' default actions, as a program started by a supervisor has them: a
        # test run under nohup would otherwise hand its ignored SIGHUP down to the program.
        preexec_fn=_default_signals,
    )


def _default_signals() -> None:
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def _wait_for(proc: subprocess.Popen, word: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if line.startswith(word) or not line:
            return
    raise AssertionError(f"no {word!r} line in {seen}; the group: {_states(proc.pid)}")


def _states(pgid: int) -> list[str]:
    """The group's processes: command line, state and where in the kernel each waits."""
    out = []
    for pid in _alive_in_group(pgid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            wchan = Path(f"/proc/{pid}/wchan").read_text()
        except OSError:
            continue
        out.append(f"{pid} {state} {wchan} {cmd}")
    return out


def _alive_in_group(pgid: int) -> list[int]:
    """Pids of the group's processes that still run (zombies waiting for their reaper, here a
    sandbox's slow init, do not count: they have ended)."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry))
    return alive


def _group_gone(proc: subprocess.Popen, timeout: float) -> float:
    """Seconds until no process of the program's group still runs (the agent included)."""
    pgid = proc.pid
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        proc.poll()
        if not _alive_in_group(pgid):
            return time.monotonic() - start
        time.sleep(0.02)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    raise AssertionError(f"process group {pgid} still alive after {timeout} s")


def _check_trace(spans, expect_signal: str | None) -> dict[str, list]:
    """Each span once and ended; every parent exported; process spans named as the program."""
    ids = [s.span_id for s in spans]
    assert len(ids) == len(set(ids)), "a span arrived twice"
    by_id = {s.span_id: s for s in spans}
    for s in spans:
        assert s.end_time_unix_nano >= s.start_time_unix_nano > 0
        if s.parent_span_id:
            assert s.parent_span_id in by_id, f"{s.name}: parent never exported"
    names: dict[str, list] = {}
    for s in spans:
        names.setdefault(s.name, []).append(s)
    assert len(names.get("prog", [])) == 1
    if expect_signal is not None:
        for s in names["prog"] + names.get("busy", []):
            assert s.status_code == "ERROR", (s.name, s.status_message)
            assert expect_signal in s.status_message or "interrupted" in s.status_message
    return names


# SIGINT to the group is in the random-point test below: with a Pool mid-imap, Ctrl-C makes
# CPython's pool shut down in ways whose timing varies (a rare hang was seen under load).
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_the_process_group_loses_no_process_span(
    tmp_path, receiver, method, signum, request
):
    """Two busy children and a Pool(2) mid-map when the whole group gets the signal: the main
    span, both children and both pool workers arrive ended and ERROR naming the signal, the
    finished task spans too, and the program still dies of the signal. The run's private
    directory (the collector's socket) is not left behind in the temporary directory."""
    # Short, so that the run's socket path fits in it (a deep one is passed over for /tmp).
    temporary = Path(tempfile.mkdtemp(prefix="pt-stop-"))
    request.addfinalizer(lambda: shutil.rmtree(temporary, ignore_errors=True))
    proc = _start(tmp_path, method, 30, {**receiver.env(), "TMPDIR": str(temporary)})
    _wait_for(proc, "tasks")
    os.killpg(proc.pid, signum)
    took = _group_gone(proc, 10)
    proc.wait(timeout=5)
    if signum != signal.SIGINT:
        assert proc.returncode == -signum  # died of the signal, as without proctrace
    time.sleep(0.3)
    names = _check_trace(receiver.spans, signal.Signals(signum).name)
    assert len(names.get("busy", [])) == 2
    workers = names.get("multiprocessing.pool.worker", [])
    assert 1 <= len(workers) <= 2 if method != "fork" else len(workers) == 2
    assert names.get("square"), "finished task spans are kept"
    for span in names["busy"] + workers:  # the pid, though the children never ended their span
        assert span.attributes.get("process.pid", 0) > 0, span.name
    assert took < 2.0, took
    assert not list(temporary.glob("proctrace-*")), list(temporary.iterdir())


def test_a_group_stop_with_a_stalled_backend_keeps_the_spans_on_disk(tmp_path, method):
    """SIGTERM to the group while the backend takes 3 s per export: the spans the backend did
    not take are in the undelivered file, and the group is gone within 2 s anyway."""
    with FaultyBackend("stall", "grpc") as backend:
        proc = _start(tmp_path, method, 30, backend.env())
        _wait_for(proc, "tasks")
        os.killpg(proc.pid, signal.SIGTERM)
        took = _group_gone(proc, 10)
        _, stderr = proc.communicate(timeout=5)
    assert took < 2.0, took
    line = next(x for x in stderr.splitlines() if "could not be sent" in x)
    kept = tmp_path / re.search(r"kept in (\S+);", line).group(1)
    count = int(line.split("proctrace: ")[1].split()[0])
    on_disk = sum(
        len(ss.get("spans", ()))
        for request in map(json.loads, kept.read_text().splitlines())
        for rs in request["resourceSpans"]
        for ss in rs["scopeSpans"]
    )
    assert on_disk == count > 0  # nothing claimed that is not on disk


def test_a_sigterm_to_the_main_process_alone_ends_its_span_and_leaves_running_children(
    tmp_path, receiver
):
    """SIGTERM to the main pid only: its span ends ERROR; the children it left running are
    reported as still running when the program went away."""
    proc = _start(tmp_path, "fork", 3, receiver.env())
    _wait_for(proc, "pool")
    os.kill(proc.pid, signal.SIGTERM)
    try:
        _group_gone(proc, 10)
    finally:
        proc.communicate(timeout=5)
    time.sleep(0.3)
    names = _check_trace(receiver.spans, None)
    assert names["prog"][0].status_code == "ERROR"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stops_at_random_points_claim_only_what_is_on_disk(tmp_path, seed):
    """A random signal (TERM, HUP, INT) to the group or to the main pid, at a random moment
    (starting, in tasks, exiting): the exit line's count equals the spans in the trace file,
    each span is there once and ended, and no span's parent is missing."""
    rng = random.Random(seed)
    method = rng.choice(["fork", "spawn", "forkserver"])
    signum = rng.choice([signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
    group = rng.random() < 0.7
    delay = rng.choice([0.0, 0.05, 0.3, 0.8, 1.5])
    proc = _start(tmp_path, method, 1, {})
    time.sleep(delay)
    if group:
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    try:
        _group_gone(proc, 8)  # well under a second when nothing hangs
    finally:
        _, stderr = proc.communicate(timeout=5)
    claims = [x for x in stderr.splitlines() if re.match(r"proctrace: \d+ spans", x)]
    files = sorted((tmp_path / ".proctrace").glob("*.jsonl"))
    spans = []
    for path in files:
        for request in map(json.loads, path.read_text().splitlines()):
            for rs in request["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    spans += ss["spans"]
    ids = [s["spanId"] for s in spans]
    assert len(ids) == len(set(ids))
    assert all(int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"]) for s in spans)
    known = set(ids)
    assert all(s.get("parentSpanId") in known for s in spans if s.get("parentSpanId"))
    for claim in claims:
        count = int(claim.split()[1])
        assert count == len(spans), (claim, len(spans))
