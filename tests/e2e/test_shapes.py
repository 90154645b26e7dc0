"""Every shape of process target keeps every guarantee of a plain decorated function: a
partial, a callable instance, a bound method, a ``Process`` subclass's own ``run()``."""

from __future__ import annotations

import pytest
from conftest import by_name, settle

SHAPES = """
import functools, multiprocessing, os, sys, time
import proctrace
from proctrace import traced

def body(label, x, k=1):
    if x == 0:
        raise ValueError(label)
    if x < 0:  # wait to be killed, once the span is open
        open(f"ready-{os.getpid()}", "w").close()
        time.sleep(30)

# What @traced decorates, or, under instrument(), the same shapes undecorated.
DECORATE = traced if sys.argv[3] == "traced" else (lambda fn: fn)

@DECORATE
def work(label, x, k=1):
    body(label, x, k)

class Worker:
    @DECORATE
    def __call__(self, label, x, k=1):
        body(label, x, k)

    @DECORATE
    def method(self, label, x, k=1):
        body(label, x, k)

class Job(multiprocessing.Process):
    def __init__(self, label, x, k=1):
        super().__init__()
        self.label, self.x, self.k = label, x, k

    @DECORATE
    def run(self):
        body(self.label, self.x, self.k)

def make(shape, label, x):
    Process = multiprocessing.Process
    if shape == "plain":
        return Process(target=work, args=(label, x), kwargs={"k": 2})
    if shape == "partial":
        return Process(target=functools.partial(work, label, k=2), args=(x,))
    if shape == "instance":
        return Process(target=Worker(), args=(label, x), kwargs={"k": 2})
    if shape == "method":
        return Process(target=Worker().method, args=(label, x), kwargs={"k": 2})
    return Job(label, x, 2)

def killed(shape, how):
    p = make(shape, how, -1)
    p.start()
    while not os.path.exists(f"ready-{p.pid}"):
        time.sleep(0.01)
    if how == "kill":
        p.kill()
    else:
        os.kill(p.pid, 9)  # from elsewhere: the starter is not told
    p.join()
    return p.exitcode

if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    if sys.argv[3] == "instrument":
        proctrace.instrument()
    for shape in sys.argv[2].split(","):
        if sys.argv[4] == "kill":
            print(shape, killed(shape, "kill"), killed(shape, "sigkill"))
            continue
        codes = []
        for label, x in (("ok", 3), ("bad", 0)):
            p = make(shape, label, x)
            p.start()
            p.join()
            codes.append(p.exitcode)
        print(shape, *codes)
"""

ALL = ("plain", "partial", "instance", "method", "subclass")
NAMES = {
    "plain": "work",
    "partial": "work",
    "instance": "Worker.__call__",
    "method": "Worker.method",
    "subclass": "Job.run",
}


def _check_ended(span, root, shape, method, label, code):
    """The span of one process of ``shape``, as a plain decorated function's would be."""
    assert span.name == NAMES[shape]
    assert span.parent_span_id == root.span_id
    assert span.attributes["code.function.name"] == "__main__." + NAMES[shape]
    assert span.attributes["process.exit.code"] == code
    assert span.attributes["proctrace.start_method"] == method
    if shape == "subclass":  # run(self) takes no argument: self is not one
        assert span.attributes["proctrace.args"] == ()
        assert "proctrace.kwargs.k" not in span.attributes
    else:  # a partial's own arguments merged in as the call sees them; self left out
        assert span.attributes["proctrace.args"] == (repr(label), "3" if code == 0 else "0")
        assert span.attributes["proctrace.kwargs.k"] == "2"


def _run_shapes(run_script, receiver, method, shapes, mode, case):
    run = run_script(SHAPES, method, ",".join(shapes), mode, case, env=receiver.env())
    assert run.returncode == 0, run.stderr
    return run


def _by_label(spans):
    return {s.attributes.get("proctrace.args", ("",))[:1]: s for s in spans}


@pytest.mark.parametrize("shape", ALL)
def test_each_target_shape_gets_the_span_of_a_decorated_function(
    run_script, receiver, method, shape
):
    """A normal end and an exception: the name, arguments, exit code and status a plain
    ``@traced`` function's process has, under every start method."""
    run = _run_shapes(run_script, receiver, method, [shape], "traced", "run")
    assert run.stdout.split() == [shape, "0", "1"]
    spans = settle(receiver, 3)  # the main span and two processes
    (root,) = [s for s in spans if s.parent_span_id is None]
    ended = sorted((s for s in spans if s is not root), key=lambda s: s.start_time_unix_nano)
    ok, bad = ended
    _check_ended(ok, root, shape, method, "ok", 0)
    assert ok.status_code == "UNSET"
    _check_ended(bad, root, shape, method, "bad", 1)
    assert bad.status_code == "ERROR"
    (exception,) = [e for e in bad.events if e.name == "exception"]
    assert exception.attributes["exception.type"] == "ValueError"
    started = run.events("process started")
    assert [e["function"] for e in started] == ["__main__." + NAMES[shape]] * 2


@pytest.mark.parametrize("shape", ALL)
def test_each_target_shape_killed_still_has_its_span(run_script, receiver, shape):
    """SIGKILL through ``kill()`` or from elsewhere: the starter announced the span, so the
    agent ends it (ERROR), as for a plain decorated function."""
    run = _run_shapes(run_script, receiver, "fork", [shape], "traced", "kill")
    assert run.stdout.split() == [shape, "-9", "-9"]
    spans = settle(receiver, 3)
    (root,) = [s for s in spans if s.parent_span_id is None]
    processes = by_name([s for s in spans if s is not root])[NAMES[shape]]
    assert len(processes) == 2
    killed, sigkilled = sorted(processes, key=lambda s: s.start_time_unix_nano)
    for span in processes:
        assert span.status_code == "ERROR"
        assert span.parent_span_id == root.span_id
        assert span.attributes["process.exit.code"] == -9
    assert killed.attributes["proctrace.terminated"] is True
    assert killed.status_message == "killed by SIGKILL (Process.kill())"
    assert sigkilled.attributes["proctrace.abnormal_end"] is True
    assert "proctrace.terminated" not in sigkilled.attributes


def test_every_target_shape_is_traced_undecorated_under_instrument(
    run_script, receiver, method
):
    """Under ``instrument()``: a partial is named after its function with its own arguments
    recorded, a callable instance after its ``__call__``, a ``Process`` subclass that
    overrides ``run()`` after that method, which runs inside the process span."""
    run = _run_shapes(run_script, receiver, method, ALL, "instrument", "run")
    assert run.stdout.splitlines() == [f"{shape} 0 1" for shape in ALL]
    spans = settle(receiver, 1 + 2 * len(ALL))
    (root,) = [s for s in spans if s.parent_span_id is None]
    # "plain" and "partial" share the name "work": four spans, in start order.
    work = sorted(by_name(spans)["work"], key=lambda s: s.start_time_unix_nano)
    assert len(work) == 4
    order = {shape: i for i, shape in enumerate(ALL)}
    for shape in ALL:
        processes = by_name(spans)[NAMES[shape]]
        if NAMES[shape] == "work":
            processes = work[2 * order[shape] : 2 * order[shape] + 2]
        ok, bad = sorted(processes, key=lambda s: s.start_time_unix_nano)
        _check_ended(ok, root, shape, method, "ok", 0)
        _check_ended(bad, root, shape, method, "bad", 1)
        assert ok.status_code == "UNSET" and bad.status_code == "ERROR"


def test_a_process_subclass_killed_under_instrument_still_has_its_span(run_script, receiver):
    """The stand-in for an overridden ``run()`` is announced like any traced target."""
    run = _run_shapes(run_script, receiver, "spawn", ["subclass"], "instrument", "kill")
    assert run.stdout.split() == ["subclass", "-9", "-9"]
    spans = settle(receiver, 3)
    processes = by_name(spans)["Job.run"]
    assert len(processes) == 2
    assert all(s.status_code == "ERROR" for s in processes)
    assert sum(bool(s.attributes.get("proctrace.abnormal_end")) for s in processes) == 1
