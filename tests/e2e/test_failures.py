"""Every way a child can end leaves a span that says how, and reaches the backend."""

from __future__ import annotations

import pytest
from conftest import by_name, settle
from faults import PROGRAM as FAULTS

ENDINGS = """
import multiprocessing, os, signal, sys, time
from proctrace import traced

@traced
def sleeper():
    time.sleep(30)

@traced
def leave_now():
    os._exit(5)

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    results = []
    for how in ("terminate", "kill"):
        p = ctx.Process(target=sleeper, name=how)
        p.start()
        time.sleep(0.3 if sys.argv[1] == "fork" else 1.0)  # the task is running
        getattr(p, how)()
        p.join()
        results.append(p.exitcode)
    p = ctx.Process(target=leave_now, name="os._exit")
    p.start(); p.join()
    results.append(p.exitcode)
    p = ctx.Process(target=sleeper, name="early")
    p.start(); p.terminate(); p.join()  # before its target can run
    results.append(p.exitcode)
    print(results)
"""


def test_terminate_kill_os_exit_and_early_death_each_leave_a_truthful_span(
    run_script, receiver, method
):
    """terminate(): ERROR 'terminated', exit code -15, and the process still dies of SIGTERM;
    kill(): -9; os._exit(5) inside the task: ERROR ended abnormally with code 5; a child
    terminated before its target ran still has its span."""
    run = run_script(ENDINGS, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[-15, -9, 5, -15]"
    spans = {s.attributes["proctrace.process.name"]: s for s in settle(receiver, 5)
             if s.name != "prog"}
    terminated = spans["terminate"]
    assert terminated.status_code == "ERROR"
    assert "terminated by SIGTERM" in terminated.status_message
    assert terminated.attributes["process.exit.code"] == -15
    assert terminated.attributes["proctrace.terminated"] is True
    assert terminated.duration_ms >= 250
    assert spans["kill"].attributes["process.exit.code"] == -9
    assert "SIGKILL" in spans["kill"].status_message
    exited = spans["os._exit"]
    assert exited.status_code == "ERROR"
    assert exited.attributes["proctrace.abnormal_end"] is True
    assert exited.attributes["process.exit.code"] == 5
    early = spans["early"]
    assert early.status_code == "ERROR"
    assert early.attributes["process.exit.code"] == -15
    # Each span has its process's pid, also those of children killed before they could end
    # their span (under fork the starter opens it before the pid exists; its reports say it).
    # Their parent's pid too: the starter's under fork and spawn, the fork server's under
    # forkserver (the starter says which when it announces a spawn or forkserver child).
    starter = settle(receiver, 5)
    (main,) = [s for s in starter if s.name == "prog"]
    for span in spans.values():
        assert span.attributes["process.pid"] > 0
        assert span.attributes["process.parent_pid"] > 0, span.attributes
        if method != "forkserver":
            assert span.attributes["process.parent_pid"] == main.attributes["process.pid"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_children_killed_at_random_points_each_have_exactly_one_ended_span(
    run_script, receiver, method, seed
):
    """Fault injection: whatever the moment and the way a child ends, the trace has every
    process, each exactly once, ended, with a status that matches how it ended."""
    count = 12
    run = run_script(FAULTS, method, str(seed), str(count), env=receiver.env(), timeout=90)
    assert run.returncode == 0, run.stderr
    outcomes = {}
    for line in run.stdout.splitlines():
        name, fate, code = line.split()
        outcomes[name] = (fate, int(code))
    assert len(outcomes) == count
    spans = by_name(settle(receiver, count + 1))
    victims = {s.attributes["proctrace.process.name"]: s for s in spans["victim"]}
    assert sorted(victims) == sorted(outcomes)  # each process exactly once
    for name, (fate, code) in outcomes.items():
        span = victims[name]
        assert span.end_time_unix_nano >= span.start_time_unix_nano
        if code == 0:
            assert span.status_code == "UNSET", (name, fate, span.status_message)
        else:
            assert span.status_code == "ERROR", (name, fate, code)
            if "process.exit.code" in span.attributes:
                assert span.attributes["process.exit.code"] == code, (name, fate)


def test_unpicklable_arguments_fail_exactly_as_without_proctrace(run_script, receiver):
    """Under spawn an unpicklable argument raises the same error from start(), and nothing
    is left behind: no span for a process that never existed."""
    source = """
    import multiprocessing, pickle, sys
    from proctrace import traced

    @traced
    def task(fn):
        pass

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("spawn")
        try:
            ctx.Process(target=task, args=(lambda: 1,)).start()
        except Exception as exc:
            print(type(exc).__name__, exc)
    """
    run = run_script(source, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("PicklingError Can't pickle <function <lambda>")
    spans = receiver.wait_for_spans(1)
    assert [s.name for s in spans] == ["prog"]


def test_a_fork_that_fails_ends_its_span_with_the_error(run_script, receiver):
    """Under fork the starter opens the child's span before forking: when the fork itself
    fails (here os.fork raising as it does when the process limit is reached), start()
    raises as without proctrace, the span ends ERROR with that error, and the next child
    is traced as usual."""
    source = """
    import multiprocessing, os
    from proctrace import traced

    @traced
    def task(i):
        return i

    if __name__ == "__main__":
        real_fork = os.fork

        def failing_fork():
            raise BlockingIOError(11, "Resource temporarily unavailable")

        ctx = multiprocessing.get_context("fork")
        os.fork = failing_fork
        try:
            ctx.Process(target=task, args=(1,)).start()
        except OSError as exc:
            print("start raised", exc.errno)
        os.fork = real_fork
        p = ctx.Process(target=task, args=(2,))
        p.start()
        p.join()
        print("exit", p.exitcode)
    """
    run = run_script(source, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["start", "raised", "11", "exit", "0"]
    spans = by_name(settle(receiver, 3))
    failed, ran = sorted(spans["task"], key=lambda s: s.attributes["proctrace.args"])
    assert failed.attributes["proctrace.args"] == ("1",)
    assert failed.status_code == "ERROR"
    assert failed.status_message == (
        "start() failed: BlockingIOError: [Errno 11] Resource temporarily unavailable"
    )
    assert ran.status_code == "UNSET"
    assert ran.attributes["process.exit.code"] == 0
    assert ran.attributes["process.pid"] > 0


EXIT_STATUSES = """
import json, multiprocessing, sys
from proctrace import traced

@traced
def leave(code):
    sys.exit(code)

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    seen = {}
    for name, code in (("True", True), ("256", 256), ("-1", -1), ("text", "bye"), ("None", None)):
        p = ctx.Process(target=leave, args=(code,), name=name)
        p.start(); p.join()
        seen[name] = p.exitcode
    print(json.dumps(seen))
"""


def test_the_exit_code_is_the_status_the_os_reports(run_script, receiver, method):
    """sys.exit(True) exits 1, sys.exit(256) exits 0, sys.exit(-1) exits 255 and
    sys.exit("bye") exits 1: the span's process.exit.code and the last line's exit_code are
    that int (never a bool, never the code as given), the same as p.exitcode, and the span
    is ERROR with a `process failed` line only when it is not 0."""
    run = run_script(EXIT_STATUSES, method, env={**receiver.env(), "PROCTRACE_LOG_FORMAT": "json"})
    assert run.returncode == 0, run.stderr
    seen = __import__("json").loads(run.stdout)
    assert seen == {"True": 1, "256": 0, "-1": 255, "text": 1, "None": 0}
    spans = {s.attributes["proctrace.process.name"]: s for s in settle(receiver, 6)
             if s.name == "leave"}
    lines = {e["process_name"]: e for e in run.logs if e.get("event") != "process started"}
    for name, code in seen.items():
        span, line = spans[name], lines[name]
        assert type(span.attributes["process.exit.code"]) is int, (name, span.attributes)
        assert span.attributes["process.exit.code"] == code, name
        assert type(line["exit_code"]) is int and line["exit_code"] == code, (name, line)
        if code:
            assert span.status_code == "ERROR", name
            assert line["event"] == "process failed" and line["level"] == "error", line
        else:
            assert span.status_code == "UNSET", (name, span.status_message)
            assert line["event"] == "process finished" and line["level"] == "info", line
    assert spans["-1"].status_message == "sys.exit(-1)"
    assert spans["True"].status_message == "sys.exit(True)"
