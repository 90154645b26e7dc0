"""Log output of traced children: format choice and whole lines on a shared pipe."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
import time

from conftest import clean_env

MANY = """
import multiprocessing, sys
import structlog
from proctrace import traced

@traced
def chatty(i):
    log = structlog.get_logger()
    for n in range(200):
        # every 50th line is longer than one atomic pipe write
        size = 6000 if n % 50 == 49 else 40 * (n % 5)
        log.info("tick", worker=i, n=n, padding="p" * size)

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    ps = [ctx.Process(target=chatty, args=(i,)) for i in range(int(sys.argv[2]))]
    for p in ps: p.start()
    for p in ps: p.join()
"""


def test_concurrent_children_write_whole_json_lines_to_one_pipe(run_script, receiver, method):
    """64 fork (32 forkserver, 16 spawn) children logging 200 events each to one stderr pipe:
    every line is whole JSON with a trace_id (also lines longer than PIPE_BUF), every span
    arrives, and nothing like "Exception ignored" is printed."""
    count = {"fork": 64, "forkserver": 32, "spawn": 16}[method]
    run = run_script(MANY, method, str(count), env=receiver.env(), timeout=120)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if not line.startswith("proctrace:")]
    parsed = [json.loads(line) for line in lines]  # raises on a torn line
    ticks = [entry for entry in parsed if entry["event"] == "tick"]
    assert len(ticks) == count * 200
    assert all(len(entry["trace_id"]) == 32 for entry in ticks)
    assert sum(len(entry["padding"]) == 6000 for entry in ticks) == count * 4
    assert "Exception ignored" not in run.stderr
    assert len(receiver.wait_for_spans(count + 1)) == count + 1


def test_log_format_can_be_forced_to_console(run_script):
    """PROCTRACE_LOG_FORMAT=console renders structlog's console format even on a pipe."""
    run = run_script(
        MANY, "fork", "1", env={"OTEL_TRACES_EXPORTER": "none", "PROCTRACE_LOG_FORMAT": "console"}
    )
    assert run.returncode == 0, run.stderr
    first = run.stderr.splitlines()[0]
    assert "process started" in first and not first.startswith("{")
    assert "trace_id=" in first


def test_a_terminal_gets_the_console_renderer_and_json_can_be_forced(tmp_path):
    """On a terminal the default is structlog's console renderer; PROCTRACE_LOG_FORMAT=json
    forces JSON there."""
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(MANY))

    def run_on_tty(**env: str) -> str:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, str(script), "fork", "1"],
            cwd=tmp_path,
            env=clean_env(OTEL_TRACES_EXPORTER="none", **env),
            stdout=subprocess.DEVNULL,
            stderr=follower,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=60)
        os.close(leader)
        return b"".join(chunks).decode(errors="replace")

    console = run_on_tty()
    assert "process started" in console
    assert '{"' not in console
    forced = run_on_tty(PROCTRACE_LOG_FORMAT="json")
    assert '"event": "process started"' in forced


def test_structlog_imported_late_in_a_child_is_configured_on_import(run_script, method):
    """No process loads structlog unless the program does (it costs ~45 ms to import, and
    makes a forking parent bigger); a task that imports it itself still logs with the process
    and trace keys, and proctrace's own lines are the same either way."""
    source = """
    import multiprocessing, sys
    from proctrace import traced

    @traced
    def work():
        loaded_before = "structlog" in sys.modules
        import structlog
        structlog.get_logger().info("late", loaded_before=loaded_before)

    if __name__ == "__main__":
        p = multiprocessing.get_context(sys.argv[1]).Process(target=work)
        p.start(); p.join()
    """
    run = run_script(source, method, env={"OTEL_TRACES_EXPORTER": "none"})
    assert run.returncode == 0, run.stderr
    (started,) = run.events("process started")
    (late,) = run.events("late")
    assert late["loaded_before"] is False
    assert late["span_id"] == started["span_id"] and late["trace_id"] == started["trace_id"]
    assert late["process_name"] == started["process_name"] and late["level"] == "info"
    assert list(started)[:3] == ["args", "kwargs", "event"]
    assert started["timestamp"].endswith("Z")


STDOUT_LOGS = """
import json, multiprocessing, sys
import structlog
from proctrace import traced

structlog.configure(processors=[structlog.processors.JSONRenderer()])  # prints to stdout

@traced
def square(x):
    structlog.get_logger().info("squaring", x=x)
    return x * x

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    p = ctx.Process(target=square, args=(3,))
    p.start()
    p.join()
    print("row,1,4")
"""


def test_a_program_logging_to_stdout_keeps_stdout_its_own(run_script, method):
    """The program configured structlog, which prints to stdout: its own events stay there
    (with the trace keys), and proctrace's lifecycle lines, rendered by the program's
    processors, go to stderr (they went to stdout, into the program's output)."""
    run = run_script(STDOUT_LOGS, method, env={"OTEL_TRACES_EXPORTER": "none"})
    assert run.returncode == 0, run.stderr
    out = run.stdout.splitlines()
    assert out[-1] == "row,1,4"
    (own,) = [json.loads(line) for line in out[:-1]]
    assert own["event"] == "squaring" and own["x"] == 3 and len(own["trace_id"]) == 32
    events = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["process started", "process finished"]
    assert all(e["trace_id"] == own["trace_id"] for e in events)
    assert "level" not in events[0]  # the program's processors: no add_log_level among them


CACHED_LOGGER = """
import json, multiprocessing, sys
import structlog
import proctrace

structlog.configure(
    processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
    logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
    cache_logger_on_first_use=True,
)
log = structlog.get_logger()

def child(n):
    log.info("child working", n=n)

def task(x):
    log.info("task", x=x)
    return x

if __name__ == "__main__":
    proctrace.instrument()
    ctx = multiprocessing.get_context(sys.argv[1])
    log.info("main start")  # the logger caches its processors here, before any child
    p = ctx.Process(target=child, args=(1,))
    p.start()
    p.join()
    with ctx.Pool(1) as pool:
        pool.map(task, [1])
"""


def test_a_logger_cached_on_first_use_in_the_parent_gets_the_keys_in_children(
    run_script, receiver, method
):
    """structlog's ``cache_logger_on_first_use``, the logger used in the parent first: a fork
    child's and a pool task's events had no trace keys and were no span events (the
    processors proctrace adds went into a new list the cached logger never saw)."""
    run = run_script(CACHED_LOGGER, method, env={**receiver.env(), "PROCTRACE_QUIET": "true"})
    assert run.returncode == 0, run.stderr
    lines = {e["event"]: e for e in map(json.loads, run.stdout.splitlines())}
    assert set(lines) == {"main start", "child working", "task"}
    receiver.wait_for_spans(4, timeout=30)
    time.sleep(0.5)
    spans = {s.span_id: s for s in receiver.spans}
    for event in ("child working", "task"):
        line = lines[event]
        assert len(line["trace_id"]) == 32 and line["span_id"] in spans, line
        assert event in [e.name for e in spans[line["span_id"]].events]
