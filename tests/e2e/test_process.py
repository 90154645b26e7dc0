"""A traced process target, under every start method, against a real OTLP receiver."""

from __future__ import annotations

from conftest import by_name, settle

PROGRAM = """
import multiprocessing, os, sys
from proctrace import traced

@traced
def process_task(x, y, key1=None):
    print("child", os.getpid(), flush=True)

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    p = ctx.Process(target=process_task, name="process-1", args=(1, 2), kwargs={"key1": "arg1"})
    p.start(); p.join()
    print("main", os.getpid(), p.pid, flush=True)
"""


def test_child_span_has_every_attribute_and_is_under_the_main_span(
    run_script, any_receiver, method
):
    """One run is one trace: the main span, and the child's span beneath it with its attributes."""
    run = run_script(PROGRAM, method, env=any_receiver.env())
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(any_receiver, 2))
    main, child = spans["prog"][0], spans["process_task"][0]
    main_pid, child_pid = (int(x) for x in run.stdout.split("main ")[1].split())

    assert main.parent_span_id is None
    assert child.parent_span_id == main.span_id
    assert child.trace_id == main.trace_id
    assert main.attributes["process.pid"] == main_pid
    assert main.attributes["proctrace.process.name"] == "MainProcess"

    attrs = child.attributes
    assert attrs["process.pid"] == child_pid
    assert attrs["proctrace.starter.pid"] == main_pid
    if method == "forkserver":
        assert attrs["process.parent_pid"] != main_pid  # the fork server
    else:
        assert attrs["process.parent_pid"] == main_pid
    assert attrs["proctrace.process.name"] == "process-1"
    assert attrs["proctrace.start_method"] == method
    assert attrs["code.function.name"] == "__main__.process_task"
    assert attrs["proctrace.args"] == ("1", "2")
    assert attrs["proctrace.kwargs.key1"] == "'arg1'"
    assert attrs["process.exit.code"] == 0
    assert child.status_code == "UNSET"
    assert child.resource["service.name"] == "prog"
    assert main.start_time_unix_nano <= child.start_time_unix_nano
    assert child.end_time_unix_nano <= main.end_time_unix_nano


def test_child_logs_started_and_finished_with_the_span_ids(run_script, receiver, method):
    """The child's stderr has `process started`/`process finished` JSON lines naming its span."""
    run = run_script(PROGRAM, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    child = by_name(settle(receiver, 2))["process_task"][0]
    (started,) = run.events("process started")
    (finished,) = run.events("process finished")
    for entry in (started, finished):
        assert entry["trace_id"] == child.trace_id
        assert entry["span_id"] == child.span_id
        assert entry["process_name"] == "process-1"
        assert entry["pid"] == child.attributes["process.pid"]
        assert entry["ppid"] == child.attributes["process.parent_pid"]
        assert entry["start_method"] == method
        assert entry["function"] == "__main__.process_task"
        assert entry["level"] == "info"
        assert entry["timestamp"].endswith("Z") and "T" in entry["timestamp"]
    assert started["args"] == ["1", "2"]
    assert started["kwargs"] == {"key1": "'arg1'"}
    assert finished["exit_code"] == 0
    assert finished["duration_ms"] >= 0


GRANDCHILDREN = """
import multiprocessing, sys
from proctrace import traced

@traced
def leaf(i):
    pass

@traced
def middle(method):
    ctx = multiprocessing.get_context(method)
    ps = [ctx.Process(target=leaf, args=(i,)) for i in range(2)]
    for p in ps: p.start()
    for p in ps: p.join()

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    p = ctx.Process(target=middle, args=(sys.argv[1],))
    p.start(); p.join()
"""


def test_grandchildren_nest_under_their_parent_child(run_script, receiver, method):
    """A child that starts processes is their parent span; all is one trace."""
    run = run_script(GRANDCHILDREN, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 4))
    main, middle = spans["prog"][0], spans["middle"][0]
    assert middle.parent_span_id == main.span_id
    assert len(spans["leaf"]) == 2
    for leaf in spans["leaf"]:
        assert leaf.parent_span_id == middle.span_id
        assert leaf.trace_id == main.trace_id
        assert leaf.attributes["proctrace.starter.pid"] == middle.attributes["process.pid"]


FROM_A_THREAD = """
import multiprocessing, sys, threading
from proctrace import traced

@traced
def leaf(i):
    return i

@traced
def middle(method):
    ctx = multiprocessing.get_context(method)
    def start(i):  # a thread of the child's own: no span is current in it
        p = ctx.Process(target=leaf, args=(i,))
        p.start(); p.join()
    for i in range(2):  # twice: the second start takes the first one's prepared route
        t = threading.Thread(target=start, args=(i,))
        t.start(); t.join()

if __name__ == "__main__":
    p = multiprocessing.get_context(sys.argv[1]).Process(target=middle, args=(sys.argv[1],))
    p.start(); p.join()
"""


def test_a_child_that_starts_processes_from_a_thread_is_still_their_parent(
    run_script, receiver, method
):
    """No span is current in a thread the child started (as in a Dask cluster made in a
    child): the processes it starts nest under the child's span, not the main one."""
    run = run_script(FROM_A_THREAD, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 4))
    middle = spans["middle"][0]
    assert middle.parent_span_id == spans["prog"][0].span_id
    assert len(spans["leaf"]) == 2
    for leaf in spans["leaf"]:
        assert leaf.parent_span_id == middle.span_id, (leaf.parent_span_id, middle.span_id)


FAILING = """
import multiprocessing, sys
from proctrace import traced

@traced
def boom():
    raise ValueError("bad input 42")

@traced
def leave(code):
    sys.exit(code)

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    codes = []
    for target, args in ((boom, ()), (leave, (3,)), (leave, (0,)), (leave, ("why",))):
        p = ctx.Process(target=target, args=args)
        p.start(); p.join()
        codes.append(p.exitcode)
    print(codes)
"""


def test_exceptions_and_sys_exit_are_recorded_and_behave_as_without_proctrace(
    run_script, receiver, method
):
    """An exception is an ERROR span with its stack trace, re-raised (exit code 1, traceback
    printed); sys.exit(n) keeps its exit code and is ERROR only when n is not 0, and then its
    line is ``process failed`` at error level too."""
    run = run_script(FAILING, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[1, 3, 0, 1]"
    assert "ValueError: bad input 42" in run.stderr  # multiprocessing's own traceback
    assert "Process " in run.stderr
    spans = by_name(settle(receiver, 5))

    (boom,) = spans["boom"]
    assert boom.status_code == "ERROR"
    assert "bad input 42" in boom.status_message
    assert boom.attributes["process.exit.code"] == 1
    (event,) = [e for e in boom.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "bad input 42"
    assert 'raise ValueError("bad input 42")' in str(event.attributes["exception.stacktrace"])

    leaves = {s.attributes["process.exit.code"]: s for s in spans["leave"]}
    assert sorted(leaves) == [0, 1, 3]
    assert leaves[3].status_code == "ERROR"
    assert leaves[1].status_code == "ERROR"
    assert leaves[0].status_code == "UNSET"

    # The lines agree with the spans: each child that ended with an exit code other than 0
    # failed, at error level; only the exception's line has a traceback.
    failed = {(e["exit_code"], "exception" in e) for e in run.events("process failed")}
    assert failed == {(1, True), (3, False), (1, False)}, run.events("process failed")
    assert {e["level"] for e in run.events("process failed")} == {"error"}
    (raised,) = [e for e in run.events("process failed") if "exception" in e]
    assert "ValueError: bad input 42" in raised["exception"]
    (finished,) = run.events("process finished")
    assert finished["exit_code"] == 0 and finished["level"] == "info"


SECRETS = """
import dataclasses, multiprocessing, sys
from proctrace import traced

@dataclasses.dataclass
class Login:
    user: str
    password: str

@traced(redact=("pin",))
def connect(host, password, *, api_key, pin, options, login, note="x" * 1000):
    pass

class Hostile:
    def __repr__(self):
        raise RuntimeError("no repr for you")

@traced(name="quiet-task", record_args=False)
def quiet(secret_value):
    pass

@traced
def hostile(value):
    pass

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    for target, args, kwargs in (
        (connect, ("db", "hunter2"), dict(api_key="AKIA-SECRET", pin="1234",
            options={"Authorization": "Bearer SECRET-TOKEN", "depth": {"token": "SECRET-2"}},
            login=Login("ann", "SECRET-PW"))),
        (quiet, ("SECRET-VALUE",), {}),
        (hostile, (Hostile(),), {}),
    ):
        p = ctx.Process(target=target, args=args, kwargs=kwargs)
        p.start(); p.join()
"""


def test_secrets_never_reach_spans_or_logs_and_reprs_are_bounded(run_script, receiver, method):
    """Secret-looking names (also inside mappings and dataclasses, and by position) and
    ``redact=`` names are [REDACTED]; reprs are cut to max_repr; a raising repr is a placeholder;
    ``record_args=False`` records nothing; ``name=`` names the span."""
    run = run_script(SECRETS, method, env={**receiver.env(), "PROCTRACE_MAX_REPR": "64"})
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 4))
    everything = repr([s.attributes for s in spans["connect"] + spans["quiet-task"]]) + run.stderr
    for secret in ("hunter2", "AKIA-SECRET", "1234", "SECRET-TOKEN", "SECRET-2", "SECRET-PW",
                   "SECRET-VALUE"):
        assert secret not in everything, secret

    attrs = spans["connect"][0].attributes
    assert attrs["proctrace.args"] == ("'db'", "[REDACTED]")
    assert attrs["proctrace.kwargs.api_key"] == "[REDACTED]"
    assert attrs["proctrace.kwargs.pin"] == "[REDACTED]"
    assert "'Authorization': [REDACTED]" in attrs["proctrace.kwargs.options"]
    assert "'token': [REDACTED]" in attrs["proctrace.kwargs.options"]
    assert attrs["proctrace.kwargs.login"] == "Login(user='ann', password=[REDACTED])"

    quiet = spans["quiet-task"][0]
    assert "proctrace.args" not in quiet.attributes
    assert quiet.attributes["code.function.name"] == "__main__.quiet"

    hostile = spans["hostile"][0].attributes["proctrace.args"]
    assert hostile == ("<unrepresentable Hostile: RuntimeError>",)
    started = [e for e in run.events("process started") if e["function"] == "__main__.connect"]
    assert started[0]["kwargs"]["pin"] == "[REDACTED]"


def test_long_reprs_are_truncated_to_the_configured_length(run_script, receiver):
    """A 10 MB argument is recorded as its first max_repr characters."""
    source = """
    import multiprocessing
    from proctrace import traced

    @traced
    def big(blob, label="y" * 500):
        pass

    if __name__ == "__main__":
        p = multiprocessing.get_context("fork").Process(
            target=big, args=("x" * 10_000_000,), kwargs={"label": "y" * 500}
        )
        p.start(); p.join()
    """
    run = run_script(source, env={**receiver.env(), "PROCTRACE_MAX_REPR": "40"})
    assert run.returncode == 0, run.stderr
    attrs = by_name(settle(receiver, 2))["big"][0].attributes
    (arg,) = attrs["proctrace.args"]
    assert len(arg) == 40 and arg.startswith("'xxx") and arg.endswith("…")
    assert len(attrs["proctrace.kwargs.label"]) == 40
    assert len(run.stderr) < 5000


def test_sdk_disabled_only_calls_the_function(run_script, receiver, method):
    """With OTEL_SDK_DISABLED=true the child runs as without proctrace: no span, no log."""
    run = run_script(PROGRAM, method, env={**receiver.env(), "OTEL_SDK_DISABLED": "true"})
    assert run.returncode == 0, run.stderr
    assert "child" in run.stdout
    assert run.logs == []
    assert receiver.spans == []


def test_user_structlog_lines_in_the_child_carry_process_and_trace_keys(
    run_script, receiver, method
):
    """What the task logs through structlog has the same keys as proctrace's own events."""
    source = """
    import multiprocessing, sys
    import structlog
    from proctrace import traced

    @traced
    def work(n):
        structlog.get_logger().warning("working", n=n)

    if __name__ == "__main__":
        p = multiprocessing.get_context(sys.argv[1]).Process(target=work, args=(7,), name="w")
        p.start(); p.join()
    """
    run = run_script(source, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    span = by_name(settle(receiver, 2))["work"][0]
    (line,) = run.events("working")
    assert line["n"] == 7
    assert line["level"] == "warning"
    assert (line["trace_id"], line["span_id"]) == (span.trace_id, span.span_id)
    assert line["process_name"] == "w"
    assert line["start_method"] == method


def test_killed_child_still_has_a_span_marked_abnormal(run_script, receiver, method):
    """A child killed with SIGKILL cannot act; its span arrives anyway, ERROR, ended abnormally."""
    source = """
    import multiprocessing, os, signal, sys, time
    from proctrace import traced

    @traced
    def victim():
        os.kill(os.getpid(), signal.SIGKILL)

    if __name__ == "__main__":
        p = multiprocessing.get_context(sys.argv[1]).Process(target=victim)
        p.start(); p.join()
        print(p.exitcode)
    """
    run = run_script(source, method, env=receiver.env())
    assert run.stdout.strip() == "-9", run.stderr
    span = by_name(settle(receiver, 2))["victim"][0]
    assert span.status_code == "ERROR"
    assert "ended before its span" in span.status_message
    assert span.attributes["proctrace.abnormal_end"] is True


RAW_FORKS = """
import multiprocessing, os, sys
from proctrace import traced

@traced
def step(i):
    return i

@traced
def inner():
    pid = os.fork()
    if pid == 0:
        sys.exit(3)  # the copy leaves inner's span by SystemExit: not its span to end
    os.waitpid(pid, 0)

@traced
def task():
    pid = os.fork()
    if pid == 0:
        sys.exit(4)  # the copy of a pool worker, inside the task's span
    os.waitpid(pid, 0)
    return "task"

@traced
def work(x):
    inner()
    for how in ("exit", "return", "raise"):
        pid = os.fork()  # a raw copy of this child, not a process of multiprocessing's
        if pid == 0:
            sys.stderr = open(os.devnull, "w")  # multiprocessing's traceback, in the copy
            print("copy", how, os.getpid(), flush=True)
            if how == "exit":
                step(1)  # a new call in the copy: a span of its own
                sys.exit(5)
            if how == "raise":
                raise ValueError("the copy")
            return x  # through the wrapper, as the target's own return
        os.waitpid(pid, 0)
    return x

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    p = ctx.Process(target=work, args=(1,))
    p.start(); p.join()
    print("child", p.pid, p.exitcode, flush=True)
    with ctx.Pool(1) as pool:
        print(pool.apply(task), flush=True)
"""


def test_a_raw_fork_copy_of_a_traced_process_ends_none_of_its_spans(run_script, receiver, method):
    """os.fork() called by the program inside a target makes a copy of the child that leaves
    the target too (by sys.exit, a return, an exception): the copy writes no lifecycle line
    and ends no span of the process it was copied from (the process span, a called span, a
    pool task's span); a traced call the copy makes is a span of its own, under the
    child's."""
    run = run_script(RAW_FORKS, method, env={**receiver.env(), "PROCTRACE_LOG_FORMAT": "json"})
    assert run.returncode == 0, run.stderr
    words = [line.split() for line in run.stdout.splitlines()]
    (child,) = [w for w in words if w[0] == "child"]
    child_pid = int(child[1])
    assert child[2] == "0"
    copies = {w[1]: int(w[2]) for w in words if w[0] == "copy"}
    assert sorted(copies) == ["exit", "raise", "return"]
    assert ["task"] in words

    lines = [e for e in run.logs if e.get("function") == "__main__.work"]
    assert [e["event"] for e in lines] == ["process started", "process finished"], lines
    assert all(e["pid"] == child_pid for e in lines)
    assert not run.events("process failed")

    # main, work, inner, step (in the copy), the pool worker and its task
    spans = by_name(settle(receiver, 6))
    (work,) = spans["work"]
    assert work.status_code == "UNSET" and work.attributes["process.exit.code"] == 0
    (inner,) = spans["inner"]
    assert inner.status_code == "UNSET" and inner.parent_span_id == work.span_id
    (task,) = spans["task"]
    assert task.status_code == "UNSET", task.status_message
    (step,) = spans["step"]
    assert step.attributes["process.pid"] == copies["exit"] != child_pid
    assert step.parent_span_id == work.span_id
