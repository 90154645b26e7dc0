"""Edge cases found in review: exit order, stacked decorators, late tracing, hostile values."""

from __future__ import annotations

import pytest
from conftest import by_name, settle


def test_atexit_handlers_that_release_children_still_run_and_daemons_are_reported(
    run_script, receiver
):
    """The run ends inside multiprocessing's own exit hook, so an atexit handler of the
    program that lets a child finish runs first (no hang); a daemonic child terminated at
    exit is reported as terminated, not as a crash."""
    source = """
    import atexit, multiprocessing, time
    from proctrace import traced

    @traced
    def waiter(ev):
        ev.wait(20)

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("fork")
        ev = ctx.Event()
        atexit.register(ev.set)
        ctx.Process(target=waiter, args=(ev,), name="released").start()
        ctx.Process(target=waiter, args=(ctx.Event(),), name="daemon", daemon=True).start()
        time.sleep(0.3)
    """
    run = run_script(source, env=receiver.env(), timeout=15)
    assert run.returncode == 0, run.stderr
    spans = {s.attributes.get("proctrace.process.name"): s for s in settle(receiver, 3)}
    assert spans["released"].status_code == "UNSET"
    assert spans["released"].attributes["process.exit.code"] == 0
    assert spans["daemon"].attributes["proctrace.terminated"] is True
    assert spans["daemon"].attributes["process.exit.code"] == -15
    assert "proctrace.abnormal_end" not in spans["daemon"].attributes


def test_a_decorator_stacked_on_traced_and_an_untraced_first_child(run_script, receiver, method):
    """@other @traced on a target still makes one normal process span; a @traced helper
    called by a child whose target is not traced nests under that child's starter, in the
    one trace of the run (no second run started inside the child)."""
    source = """
    import functools, multiprocessing, sys
    from proctrace import traced

    def logged(fn):
        @functools.wraps(fn)
        def inner(*a, **k):
            return fn(*a, **k)
        return inner

    @logged
    @traced
    def work(n):
        return n

    @traced
    def helper():
        return 1

    def plain():
        helper()

    if __name__ == "__main__":
        ctx = multiprocessing.get_context(sys.argv[1])
        for target, args in ((plain, ()), (work, (1,))):
            p = ctx.Process(target=target, args=args)
            p.start(); p.join()
            assert p.exitcode == 0
    """
    run = run_script(source, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 3))
    (work,) = spans["work"]
    assert work.status_code == "UNSET" and work.attributes["process.exit.code"] == 0
    assert len(run.events("process started")) == 1
    (helper,) = spans["helper"]
    assert helper.trace_id == work.trace_id
    assert helper.parent_span_id == spans["prog"][0].span_id


def test_exit_code_wins_over_a_late_terminate_and_deep_secrets_stay_hidden(run_script, receiver):
    """A child that ended with os._exit(3) before terminate() reached it keeps exit code 3;
    a secret nested deeper than scrubbing looks is not shown; secret-looking log keys are
    redacted in span events; text that is not valid UTF-8 does not spoil the export."""
    source = """
    import multiprocessing, os, time
    import structlog
    from proctrace import traced

    @traced
    def leave(config):
        os._exit(3)

    @traced
    def talk():
        structlog.get_logger().info("login", password="hunter2", note="caf" + chr(0xDCE9))

    if __name__ == "__main__":
        deep = {"password": "SECRET-DEEP"}
        for _ in range(9):
            deep = {"level": deep}
        p = multiprocessing.get_context("fork").Process(target=leave, args=(deep,))
        p.start()
        time.sleep(0.5)
        p.terminate(); p.join()
        print(p.exitcode)
        p = multiprocessing.get_context("fork").Process(target=talk)
        p.start(); p.join()
    """
    run = run_script(source, env=receiver.env())
    assert run.stdout.strip() == "3", run.stderr
    spans = by_name(settle(receiver, 3))
    (leave,) = spans["leave"]
    assert leave.attributes["process.exit.code"] == 3
    assert "proctrace.terminated" not in leave.attributes
    assert "SECRET-DEEP" not in repr(leave.attributes) and "[...]" in repr(leave.attributes)
    (login,) = [e for e in spans["talk"][0].events if e.name == "login"]
    assert login.attributes["password"] == "[REDACTED]"
    assert login.attributes["note"] == "caf?"  # replaced, and the batch still went out


def test_a_pool_subclass_keeps_its_own_process_class(run_script, receiver):
    """A Pool subclass that overrides Process (the usual non-daemonic pool) works as without
    proctrace, and its tasks are traced."""
    source = """
    import multiprocessing, multiprocessing.pool
    from proctrace import traced

    class NoDaemonProcess(multiprocessing.get_context("fork").Process):
        @property
        def daemon(self):
            return False

        @daemon.setter
        def daemon(self, value):
            pass

    class NestablePool(multiprocessing.pool.Pool):
        @staticmethod
        def Process(ctx, *args, **kwds):
            return NoDaemonProcess(*args, **kwds)

    def inner(x):
        return x + 1

    @traced
    def outer(x):
        with multiprocessing.get_context("fork").Pool(1) as pool:
            return pool.apply(inner, (x,))

    if __name__ == "__main__":
        with NestablePool(2, context=multiprocessing.get_context("fork")) as pool:
            print(pool.map(outer, [4, 13]))
    """
    run = run_script(source, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[5, 14]"
    receiver.wait_for_spans(3)
    assert len(by_name(receiver.spans)["outer"]) == 2


DEEP_TMPDIR = """
import multiprocessing, sys
from proctrace import traced

@traced
def child(i):
    print("child", i, flush=True)

if __name__ == "__main__":
    p = multiprocessing.get_context(sys.argv[1]).Process(target=child, args=(1,))
    p.start(); p.join()
    print("exit", p.exitcode)
"""


# Not forkserver: multiprocessing's own fork server cannot bind its socket there either.
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_tmpdir_too_deep_for_a_unix_socket_is_passed_over(run_script, receiver, method, tmp_path):
    """TMPDIR deeper than a Unix socket's path allows (108 bytes: a build sandbox's, a test
    runner's): the program's first start() raised "AF_UNIX path too long" before, and the
    program died of it; now the run's directory goes to the next place, /tmp."""
    deep = tmp_path / ("t" * 100)
    deep.mkdir()
    run = run_script(DEEP_TMPDIR, method, env={**receiver.env(), "TMPDIR": str(deep)})
    assert run.returncode == 0, run.stderr
    assert "child 1" in run.stdout and "exit 0" in run.stdout
    assert "too long" not in run.stderr and "not traced" not in run.stderr, run.stderr
    spans = receiver.wait_for_spans(2, timeout=15)
    assert sorted(s.name for s in spans) == ["child", "prog"]
    assert not list(deep.glob("proctrace-*"))


WARNINGS_AS_ERRORS = """
import multiprocessing, sys
import proctrace

@proctrace.traced
def leaf(i):
    return i

@proctrace.traced
def child(method):
    ctx = multiprocessing.get_context(method)
    grandchild = ctx.Process(target=leaf, args=(1,))
    grandchild.start(); grandchild.join()
    with ctx.Pool(1) as pool:
        assert pool.map(leaf, range(3)) == [0, 1, 2]

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    p = ctx.Process(target=child, args=(sys.argv[1],))
    p.start(); p.join()
    print("exit", p.exitcode)
"""


def test_warnings_as_errors_and_dev_mode_see_no_warning_of_proctrace(run_script, receiver, method):
    """``PYTHONWARNINGS=error`` with ``PYTHONDEVMODE=1`` (as ``-W error -X dev``): a child that
    starts a grandchild and a pool runs without a warning. A spawn child used to leave its
    connection to the garbage collector at its interpreter's shutdown: ``ResourceWarning:
    unclosed <socket ...>`` on stderr, once per child."""
    env = {**receiver.env(), "PYTHONWARNINGS": "error", "PYTHONDEVMODE": "1"}
    run = run_script(WARNINGS_AS_ERRORS, method, env=env)
    assert run.returncode == 0, run.stderr
    assert "exit 0" in run.stdout
    assert "Warning" not in run.stderr and "Exception ignored" not in run.stderr, run.stderr
    spans = by_name(settle(receiver, 7))  # prog, child, the grandchild, 3 tasks, the worker
    assert len(spans["leaf"]) == 4 and len(spans["child"]) == 1


EXEC = """
import os, sys, time, multiprocessing as mp
from proctrace import traced

@traced
def fails():
    os.execv("/bin/sh", ["sh", "-c", "sleep 0.2; exit 5"])

@traced
def succeeds():
    os.execv("/bin/sh", ["sh", "-c", "sleep 0.1"])

@traced
def cannot():
    try:
        os.execv("/no/such/program", ["x"])
    except FileNotFoundError:
        os._exit(3)  # it ran on, then ended without its span: no exec to speak of

if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    for target in (fails, succeeds, cannot):
        p = ctx.Process(target=target); p.start(); p.join()
        print(target.__name__, p.exitcode)
"""


def test_a_child_that_execs_another_program_is_one_span_to_its_real_end(
    run_script, receiver, method
):
    """A traced child that replaces its program (os.execv): its connection ends at the exec,
    the process does not. Its span lasts until the exec'd program ended (join() reaped it),
    with that program's exit code and a status that says so; never "ended before its span
    did" (nothing was killed)."""
    run = run_script(EXEC, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["fails", "5", "succeeds", "0", "cannot", "3"]
    spans = by_name(settle(receiver, 4))
    (fails,) = spans["fails"]
    assert fails.status_code == "ERROR"
    assert fails.status_message == "the program it exec'd exited with code 5"
    assert fails.attributes["process.exit.code"] == 5
    assert fails.attributes["proctrace.exec"] is True
    assert "proctrace.abnormal_end" not in fails.attributes
    assert fails.duration_ms >= 190, fails.duration_ms  # the exec'd program's 0.2 s too
    (succeeds,) = spans["succeeds"]
    assert succeeds.status_code == "UNSET" and succeeds.status_message == ""
    assert succeeds.attributes["process.exit.code"] == 0
    assert succeeds.duration_ms >= 90, succeeds.duration_ms
    (cannot,) = spans["cannot"]  # an exec that failed: what happened next is its end
    assert cannot.attributes.get("proctrace.abnormal_end") is True
    assert "proctrace.exec" not in cannot.attributes
    assert cannot.attributes["process.exit.code"] == 3


EXEC_UNJOINED = """
import os, sys, time, multiprocessing as mp
from proctrace import traced

@traced
def becomes_sh():
    os.execv("/bin/sh", ["sh", "-c", "exit 0"])

if __name__ == "__main__":
    p = mp.get_context(sys.argv[1]).Process(target=becomes_sh); p.start()
    while mp.active_children():  # reaps it (poll()), with no join() to report it
        time.sleep(0.01)
    print("reaped", time.time_ns(), flush=True)
    time.sleep(1.5)
"""


def test_an_execd_child_reaped_without_join_ends_when_it_did(run_script, receiver, method):
    """The exec'd child is reaped by active_children(), which reports nothing: its span still
    ends about when it did, not when the program ends, and does not claim it was running."""
    run = run_script(EXEC_UNJOINED, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    reaped = int(run.stdout.split()[-1])
    spans = by_name(settle(receiver, 2))
    (child,) = spans["becomes_sh"]
    assert child.attributes["proctrace.exec"] is True
    assert "proctrace.running_at_exit" not in child.attributes
    assert child.end_time_unix_nano < reaped + 600_000_000, (
        (child.end_time_unix_nano - reaped) / 1e6
    )


CLOSES_FDS = """
import os, socket, sys
from multiprocessing import get_context
import proctrace

proctrace.instrument()

def child(i):
    pass

def child_closes(port):
    os.closerange(3, 4096)  # a child that closes what it inherited, then dials out
    conn = socket.create_connection(("127.0.0.1", port))
    conn.sendall(b"HELLO\\n")
    child_closes.conn = conn  # still open after the target, as a pooled connection is

if __name__ == "__main__":
    ctx = get_context(sys.argv[1])
    p = ctx.Process(target=child, args=(0,)); p.start(); p.join()
    os.closerange(3, 4096)  # as daemonizing code does, proctrace's descriptors with the rest
    out = open("data.txt", "w")
    mine, peer = socket.socketpair()  # the program's own connection
    server = socket.create_server(("127.0.0.1", 0))
    ps = [ctx.Process(target=child, args=(i,)) for i in (1, 2)]
    ps.append(ctx.Process(target=child_closes, args=(server.getsockname()[1],)))
    for q in ps: q.start()
    conn, _ = server.accept()
    conn.settimeout(5)
    for q in ps: q.join()
    out.write("important line\\n")
    out.close()
    peer.setblocking(False)
    try:
        leaked = peer.recv(65536)
    except BlockingIOError:
        leaked = b""
    received = b""
    while not received.endswith(b"\\n"):
        received += conn.recv(100)
    print(open("data.txt").read().strip(), leaked, received, [q.exitcode for q in ps])
"""


def test_a_program_that_closes_proctraces_descriptors_gets_its_own_back(run_script, receiver):
    """A program (or a child) that closes every descriptor it did not open itself and opens
    its own: those take the lowest numbers, which proctrace's connection and lock file held.
    proctrace wrote its records into the program's socket and closed the program's file
    there; its descriptors now live high up, and one found closed is let go of unclosed.
    The spans are whole: the agent read the closed connection as the process's end (ERROR
    "process ended before its span did"); the process runs on, and ends them on its next.
    (Fork only: under spawn and forkserver, multiprocessing's own resource tracker breaks
    on its closed descriptor, and writes into the program's socket, without proctrace.)"""
    run = run_script(CLOSES_FDS, "fork", env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "important line b'' b'HELLO\\n' [0, 0, 0]", run.stderr
    assert "Bad file descriptor" not in run.stderr and "cannot reach" not in run.stderr
    spans = by_name(settle(receiver, 5))
    assert sorted(spans) == ["child", "child_closes", "prog"]
    assert len(spans["child"]) == 3
    for span in (*spans["child"], *spans["child_closes"], *spans["prog"]):
        assert span.status_code != "ERROR", (span.name, span.status_message)
        assert "proctrace.abnormal_end" not in span.attributes


NO_AGENT = """
import sys, multiprocessing
sys.executable = "/nonexistent/python3"  # the interpreter the agent would be started with
import proctrace

def task():
    print("child ran")

if __name__ == "__main__":
    proctrace.instrument()
    p = multiprocessing.get_context("fork").Process(target=task)
    p.start(); p.join()
    print("exit", p.exitcode)
"""


def test_an_agent_that_cannot_be_started_says_so_and_the_program_runs_on(run_script):
    """The agent's interpreter cannot be run (another user's venv under a directory this one
    cannot read, in a user trial): one line says the agent could not be started (it said the
    collector could not listen), and the program runs on untraced."""
    run = run_script(NO_AGENT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["child ran", "exit 0"]
    lines = [x for x in run.stderr.splitlines() if x.startswith("proctrace:")]
    assert lines == [
        "proctrace: this run is not traced: its agent could not be started "
        "(/nonexistent/python3: No such file or directory)"
    ]
