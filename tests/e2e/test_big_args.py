"""A large argument is described from its start only: bounded text, bounded cost."""

from __future__ import annotations

from conftest import by_name, settle

PROGRAM = """
import multiprocessing, resource, sys
import proctrace

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def child(data):
    print("child ran", len(data), flush=True)

def task(data):
    return len(data), peak_mb()

if __name__ == "__main__":
    proctrace.instrument()
    ctx = multiprocessing.get_context(sys.argv[1])
    blob = bytes(20 * 2**20)
    before = peak_mb()
    p = ctx.Process(target=child, args=(blob,))
    p.start()
    grew = peak_mb() - before
    p.join()
    with ctx.Pool(1) as pool:
        _, base = pool.apply(task, (b"",))
        size, peak = pool.apply(task, (blob,))
    print("start grew", round(grew), "task", size, "grew", round(peak - base), flush=True)
"""


def test_a_20_mb_argument_is_described_from_its_start_only(run_script, receiver, method):
    """A 20 MB ``bytes`` given to a child process and to a pool task: the child and the task
    run, their spans' ``proctrace.args`` is the start of its repr cut to 256 characters, and
    describing it costs the starter of a fork child and the pool worker no memory to speak of
    (its whole repr, 80 MB, was made before: 80 MB more at start(), 100 MB in the worker)."""
    run = run_script(PROGRAM, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert "child ran 20971520" in run.stdout
    words = run.stdout.split("start grew ")[1].split()
    start_grew, task_size, task_grew = int(words[0]), int(words[2]), int(words[4])
    assert task_size == 20 * 2**20
    spans = by_name(settle(receiver, 5))  # the main span, the child's, the worker's, 2 tasks
    shown = "b'" + "\\x00" * 63 + "\\…"
    (child,) = spans["child"]
    assert child.attributes["proctrace.args"] == (shown,)
    assert child.attributes["process.exit.code"] == 0
    small, big = sorted(spans["task"], key=lambda s: s.start_time_unix_nano)
    assert small.attributes["proctrace.args"] == ("b''",)
    assert big.attributes["proctrace.args"] == (shown,)
    assert task_grew < 60  # receiving and unpickling it: 20 to 40 MB
    if method == "fork":
        assert start_grew < 40  # described in the starter


LOGGED = """
import logging, multiprocessing, os, sys
import structlog
from proctrace import traced

BIG = 20 * 2**20

@traced
def work():
    structlog.get_logger().info("big value", blob="a" * BIG + " password=PW-END")
    logging.getLogger("app").warning("big message %s", "b" * BIG)
    sys.stderr = open(os.devnull, "w")  # Python's own print of the traceback below
    raise ValueError("c" * BIG)

if __name__ == "__main__":
    p = multiprocessing.get_context(sys.argv[1]).Process(target=work)
    p.start()
    p.join()
    print("exit", p.exitcode)
"""


def test_a_child_that_logs_and_raises_20_mb_keeps_its_span(run_script, receiver, method):
    """A 20 MB log value, log message and exception message: the child's span arrives
    whole (it was lost: its end record was longer than the agent takes, and the agent took
    9 s to find that out while the program waited for it at exit), with the texts cut as
    reprs are: log texts to 8192 characters, what the exception says to 65536."""
    run = run_script(LOGGED, method, env={**receiver.env(), "PROCTRACE_LOG_FORMAT": "json"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "exit 1" in run.stdout
    (work,) = by_name(settle(receiver, 2))["work"]
    assert work.status_message.startswith("ValueError: ccc")
    assert len(work.status_message) == 65536 and work.status_message.endswith("…")
    assert "abnormal" not in repr(work.attributes)
    (value,) = [e for e in work.events if e.name == "big value"]
    assert len(value.attributes["blob"]) == 8192 and value.attributes["blob"].endswith("a…")
    (message,) = [e for e in work.events if e.name.startswith("big message")]
    assert len(message.name) == 8192 and message.name.endswith("b…")
    (exception,) = [e for e in work.events if e.name == "exception"]
    assert len(exception.attributes["exception.message"]) == 65536
    assert len(exception.attributes["exception.stacktrace"]) == 65536
    (failed,) = run.events("process failed")
    assert len(failed["exception"]) == 65536
