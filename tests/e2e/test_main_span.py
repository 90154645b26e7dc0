"""The main process's span: how the program ended, and traces handed in and handed on."""

from __future__ import annotations

import sys

import pytest
from conftest import by_name, clean_env, settle

ENDINGS = """
import multiprocessing, sys
from proctrace import traced

@traced
def child():
    pass

if __name__ == "__main__":
    p = multiprocessing.Process(target=child); p.start(); p.join()
    how = sys.argv[1]
    if how == "raise":
        raise ValueError("bad input")
    if how == "exit3":
        sys.exit(3)
    if how == "exit0":
        sys.exit(0)
    if how == "interrupt":
        raise KeyboardInterrupt
    if how.startswith("exit:"):
        sys.exit(eval(how[5:]))
"""


@pytest.mark.parametrize(
    "how, status, message, code",
    [
        ("normal", "UNSET", "", None),
        ("exit0", "UNSET", "", 0),
        ("raise", "ERROR", "ValueError: bad input", 1),
        ("exit3", "ERROR", "sys.exit(3)", 3),
        ("interrupt", "ERROR", "interrupted (KeyboardInterrupt)", None),
        # The status the OS reports (the shell's $?), not the code as given.
        ("exit:256", "UNSET", "", 0),
        ("exit:-1", "ERROR", "sys.exit(-1)", 255),
        ("exit:True", "ERROR", "sys.exit(True)", 1),
    ],
)
def test_the_main_span_says_how_the_program_ended(
    run_script, receiver, how, status, message, code
):
    """An uncaught exception (with its `exception` event), sys.exit(n) and Ctrl-C end the
    main span as ERROR, with the exit code where there is one; a normal end stays UNSET."""
    run = run_script(ENDINGS, how, env=receiver.env())
    assert run.returncode == {"normal": 0, "exit0": 0, "raise": 1, "exit3": 3}.get(
        how, code if how.startswith("exit:") else run.returncode
    )
    main = by_name(settle(receiver, 2))["prog"][0]
    assert main.status_code == status
    assert main.status_message == message
    assert main.attributes.get("process.exit.code") == code
    if code is not None:
        assert type(main.attributes["process.exit.code"]) is int
    events = [e.name for e in main.events]
    assert events == (["exception"] if how == "raise" else [])
    if how == "raise":
        assert "ValueError" in run.stderr  # the program's own traceback is still printed


def test_proctrace_run_sees_a_raised_system_exit(tmp_path, receiver):
    """Under proctrace run, `raise SystemExit(4)` (not through sys.exit) ends the main span
    ERROR with exit code 4, and the exit status is still 4."""
    import subprocess

    script = tmp_path / "job.py"
    script.write_text(ENDINGS.replace('if how == "raise":', 'if how == "sysexit":\n'
                      '        raise SystemExit(4)\n    if how == "raise":'))
    proc = subprocess.run(
        [sys.executable, "-m", "proctrace", "run", str(script), "sysexit"],
        cwd=tmp_path, env=clean_env(**receiver.env()), capture_output=True, text=True,
        timeout=60,
    )
    assert proc.returncode == 4, proc.stderr
    main = by_name(settle(receiver, 2))["job"][0]
    assert main.status_code == "ERROR"
    assert main.attributes["process.exit.code"] == 4


@pytest.mark.parametrize("code, status, shell", [("256", "UNSET", 0), ("-1", "ERROR", 255)])
def test_proctrace_run_records_the_status_the_shell_sees(tmp_path, receiver, code, status, shell):
    """Under proctrace run, `raise SystemExit(256)` exits 0 and `raise SystemExit(-1)` 255:
    the main span's process.exit.code is that status, ERROR only when it is not 0."""
    import subprocess

    script = tmp_path / "job.py"
    script.write_text(ENDINGS.replace('if how == "raise":', 'if how == "sysexit":\n'
                      f'        raise SystemExit({code})\n    if how == "raise":'))
    proc = subprocess.run(
        [sys.executable, "-m", "proctrace", "run", str(script), "sysexit"],
        cwd=tmp_path, env=clean_env(**receiver.env()), capture_output=True, text=True,
        timeout=60,
    )
    assert proc.returncode == shell, proc.stderr
    main = by_name(settle(receiver, 2))["job"][0]
    assert main.status_code == status
    assert main.attributes["process.exit.code"] == shell


HANDED_IN = """
import multiprocessing, os, sys
import proctrace
from proctrace import traced

@traced
def child():
    pass

if __name__ == "__main__":
    p = multiprocessing.get_context(sys.argv[1]).Process(target=child); p.start(); p.join()
    print("inject", proctrace.inject(), flush=True)
"""

OUTSIDE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_run_with_traceparent_in_its_environment_joins_that_trace(run_script, receiver, method):
    """TRACEPARENT (and TRACESTATE) from a CI system or a scheduler: the main span's parent is
    that span, every span is in that trace, and inject() hands the tracestate on."""
    env = {**receiver.env(), "TRACEPARENT": OUTSIDE, "TRACESTATE": "vendor=abc"}
    run = run_script(HANDED_IN, method, env=env)
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 2))
    main, child = spans["prog"][0], spans["child"][0]
    assert main.trace_id == child.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert main.parent_span_id == "b7ad6b7169203331"
    assert child.parent_span_id == main.span_id
    assert f"'traceparent': '00-{main.trace_id}-{main.span_id}-01'" in run.stdout
    assert "'tracestate': 'vendor=abc'" in run.stdout


def test_an_unsampled_traceparent_handed_in_is_followed(run_script, receiver):
    """The default sampler is parent-based: a TRACEPARENT whose flags say unsampled makes the
    whole run record nothing."""
    env = {**receiver.env(), "TRACEPARENT": OUTSIDE[:-2] + "00"}
    run = run_script(HANDED_IN, "fork", env=env)
    assert run.returncode == 0, run.stderr
    import time

    time.sleep(0.3)
    assert receiver.spans == []


def test_a_malformed_traceparent_is_ignored(run_script, receiver):
    """A TRACEPARENT that is not W3C trace context starts a trace of its own."""
    env = {**receiver.env(), "TRACEPARENT": "garbage"}
    run = run_script(HANDED_IN, "fork", env=env)
    assert run.returncode == 0, run.stderr
    main = by_name(settle(receiver, 2))["prog"][0]
    assert main.parent_span_id is None


BRIDGE = """
import multiprocessing, queue, sys, threading
import proctrace
from proctrace import traced

@traced
def consumer_work(item):
    pass

def consume(q):
    headers, item = q.get()
    with proctrace.extract(headers):
        p = multiprocessing.get_context(sys.argv[1]).Process(target=consumer_work, args=(item,))
        p.start(); p.join()

if __name__ == "__main__":
    q = queue.Queue()
    worker = threading.Thread(target=consume, args=(q,))
    worker.start()
    q.put((proctrace.inject(), "job-1"))  # as a message queue or task headers would carry it
    worker.join()
    print("main trace", proctrace.current_trace_id(), flush=True)
"""


def test_inject_and_extract_carry_the_trace_across_a_queue(run_script, receiver, method):
    """inject() in the producer and `with extract(headers):` in a consumer thread (standing in
    for a message queue or Celery headers): the process started there is under the span the
    headers name, in the same trace."""
    run = run_script(BRIDGE, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 2))
    main, work = spans["prog"][0], spans["consumer_work"][0]
    assert work.parent_span_id == main.span_id
    assert work.trace_id == main.trace_id
    assert f"main trace {main.trace_id}" in run.stdout


CELERY_LIKE = """
import json, multiprocessing, os, subprocess, sys
from opentelemetry import propagate
from proctrace import traced

CONSUMER = '''
import json, sys
from opentelemetry import context, propagate
from proctrace import traced

@traced
def handle(job):
    pass

if __name__ == "__main__":
    headers = json.loads(sys.argv[1])
    token = context.attach(propagate.extract(headers))  # the instrumentation, in the worker
    try:
        handle("job-1")
    finally:
        context.detach(token)
'''

@traced
def publish(q):
    headers = {}
    propagate.inject(headers)  # what opentelemetry-instrumentation-celery does on apply_async
    q.put(headers)

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    q = ctx.Queue()
    p = ctx.Process(target=publish, args=(q,))
    p.start(); headers = q.get(); p.join()
    with open("consumer.py", "w") as f:
        f.write(CONSUMER)
    env = {k: v for k, v in os.environ.items() if k != "TRACEPARENT"}  # another machine's
    subprocess.run([sys.executable, "-m", "proctrace", "run", "consumer.py", json.dumps(headers)],
                   env=env, check=True)
"""


def test_opentelemetry_propagators_carry_proctrace_spans_as_task_headers_do(
    run_script, receiver
):
    """What opentelemetry-instrumentation-celery does with task headers, done by hand with the
    same OpenTelemetry calls: ``propagate.inject`` in a traced child gives that child's span
    (proctrace's current span is OpenTelemetry's current span once the API is loaded), and a
    worker program that attaches ``propagate.extract(headers)`` runs its traced call under it,
    in the same trace."""
    run = run_script(CELERY_LIKE, "spawn", env=receiver.env())  # the API imported afresh
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 3))
    publish, handle = spans["publish"][0], spans["handle"][0]
    assert handle.parent_span_id == publish.span_id
    assert handle.trace_id == publish.trace_id


SUBPROCESS = """
import multiprocessing, os, subprocess, sys
from proctrace import traced

@traced
def child(inner):
    out = subprocess.run([sys.executable, "-c", "import os; print(os.environ['TRACEPARENT'])"],
                         capture_output=True, text=True).stdout.strip()
    print("seen", out, flush=True)
    subprocess.run([sys.executable, "-m", "proctrace", "run", inner], check=True)
    chosen = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ['TRACEPARENT'])"],
        env={**os.environ, "TRACEPARENT": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
        capture_output=True, text=True).stdout.strip()
    print("chosen", chosen, flush=True)

if __name__ == "__main__":
    p = multiprocessing.get_context(sys.argv[1]).Process(target=child, args=(sys.argv[2],))
    p.start(); p.join()
"""

INNER = """
import multiprocessing

def leaf():
    pass

if __name__ == "__main__":
    p = multiprocessing.Process(target=leaf); p.start(); p.join()
"""


def test_a_program_started_from_a_traced_child_continues_the_trace(
    run_script, receiver, tmp_path, method
):
    """subprocess from a traced child gets TRACEPARENT naming the child's span; a traced
    Python program it runs (here under `proctrace run`) joins the trace under that span; a
    TRACEPARENT the program sets itself is left alone."""
    inner = tmp_path / "inner.py"
    inner.write_text(INNER)
    run = run_script(SUBPROCESS, method, str(inner), env=receiver.env())
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 4))
    child, inner_main, leaf = spans["child"][0], spans["inner"][0], spans["leaf"][0]
    assert f"seen 00-{child.trace_id}-{child.span_id}-01" in run.stdout
    assert inner_main.trace_id == child.trace_id
    assert inner_main.parent_span_id == child.span_id
    assert leaf.parent_span_id == inner_main.span_id
    assert "chosen 00-" + "1" * 32 + "-" + "2" * 16 + "-01" in run.stdout


RAW_FORK = """
import os, sys, multiprocessing as mp
from proctrace import traced

@traced
def work(x):
    return x

if __name__ == "__main__":
    p = mp.Process(target=work, args=(0,)); p.start(); p.join()
    copies = []
    for how in ("exit", "quiet", "os_exit"):
        pid = os.fork()
        if pid == 0:  # a copy of the program made by os.fork() itself, not multiprocessing
            if how != "quiet":
                q = mp.Process(target=work, args=(how,)); q.start(); q.join()
            if how == "os_exit":
                os._exit(0)
            sys.exit(4)
        copies.append(pid)
    print("copies", [os.waitstatus_to_exitcode(os.waitpid(c, 0)[1]) for c in copies])
"""


@pytest.mark.parametrize("runner", ["decorator", "proctrace run"])
def test_a_copy_made_by_os_fork_is_a_process_of_the_same_run(tmp_path, receiver, runner):
    """os.fork() in the main program: a copy that traces something is a process of the same
    trace, under the main span (not a second run with its own trace and exit line): its own
    span, its children under it, ended as the copy ended (sys.exit(4): ERROR, 4), or by the
    agent when it left by os._exit(); a copy that traces nothing adds no span."""
    import subprocess

    script = tmp_path / "job.py"
    script.write_text(RAW_FORK)
    command = [sys.executable, str(script)]
    if runner == "proctrace run":
        command[1:1] = ["-m", "proctrace", "run"]
    proc = subprocess.run(
        command, cwd=tmp_path, env=clean_env(**receiver.env()), capture_output=True,
        text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "copies [4, 4, 0]" in proc.stdout
    spans = by_name(settle(receiver, 6))  # main, 3 work, 2 copies
    (main,) = [s for s in spans["job"] if s.parent_span_id is None]
    copies = [s for s in spans["job"] if s.parent_span_id is not None]
    assert len(copies) == 2
    assert {s.trace_id for group in spans.values() for s in group} == {main.trace_id}
    assert all(c.parent_span_id == main.span_id for c in copies)
    assert all(c.attributes["proctrace.start_method"] == "os.fork" for c in copies)
    assert all(c.attributes["process.parent_pid"] == main.attributes["process.pid"]
               for c in copies)
    by_pid = {c.attributes["process.pid"]: c for c in copies}
    work = {s.attributes["proctrace.args"][0]: s for s in spans["work"]}
    assert work["0"].parent_span_id == main.span_id
    exited = by_pid[work["'exit'"].attributes["process.parent_pid"]]
    assert work["'exit'"].parent_span_id == exited.span_id
    assert exited.status_code == "ERROR" and exited.attributes["process.exit.code"] == 4
    left = by_pid[work["'os_exit'"].attributes["process.parent_pid"]]
    assert work["'os_exit'"].parent_span_id == left.span_id
    assert left.attributes.get("proctrace.abnormal_end") is True
    assert proc.stderr.count("proctrace:") <= 1  # one run: at most one exit line


API_ROOTS = """
import multiprocessing, sys
from opentelemetry import trace
from proctrace import traced

@traced
def child(i):
    pass

if __name__ == "__main__":
    tracer = trace.get_tracer("app")
    for phase in ("phase-1", "phase-2"):
        with tracer.start_as_current_span(phase):
            p = multiprocessing.get_context(sys.argv[1]).Process(target=child, args=(1,))
            p.start(); p.join()
"""


def test_the_programs_own_root_spans_join_the_trace_handed_in(run_script, receiver, method):
    """Under TRACEPARENT, spans the program makes through the API with no span current join
    the trace handed in, under the span named there, as the main span does (each began a
    trace of its own, and the run was not in the caller's trace at all)."""
    run = run_script(API_ROOTS, method, env={**receiver.env(), "TRACEPARENT": OUTSIDE})
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 4))
    phases = [*spans["phase-1"], *spans["phase-2"]]
    assert {s.trace_id for s in (*phases, *spans["child"])} == {OUTSIDE.split("-")[1]}
    assert {s.parent_span_id for s in phases} == {OUTSIDE.split("-")[2]}
    assert sorted(c.parent_span_id for c in spans["child"]) == sorted(p.span_id for p in phases)
