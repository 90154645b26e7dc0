"""joblib: a span per call of the user's function (not per batch) under the span where
``Parallel(...)(...)`` was called, and loky's workers traced like a pool's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT, by_name, clean_env, settle

PROGRAM = """
import sys
from joblib import Parallel, delayed
from opentelemetry import trace
from proctrace import traced

tracer = trace.get_tracer("test")
# @traced on the function, or nothing: the program is run with `proctrace run`.
DECORATE = traced if sys.argv[2] == "traced" else (lambda fn: fn)

@DECORATE
def scale(x, factor=1):
    if x == 5 and sys.argv[3] == "fail":
        raise ValueError(x)
    return x * factor

if __name__ == "__main__":
    with tracer.start_as_current_span("caller"):
        try:
            out = Parallel(n_jobs=2, backend=sys.argv[1])(
                delayed(scale)(i, factor=3) for i in range(8)
            )
        except ValueError as exc:
            out = f"raised {exc}"
    print(out)
"""

WORKERS = {
    "loky": "joblib.externals.loky.process_executor._process_worker",
    "multiprocessing": "multiprocessing.pool.worker",
}


def _run(tmp_path, receiver, backend, mode, case="ok"):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(PROGRAM))
    runner = ["-m", "proctrace", "run"] if mode == "run" else []
    return subprocess.run(
        [sys.executable, *runner, str(script), backend, mode, case],
        cwd=tmp_path,
        env=clean_env(**receiver.env()),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("mode", ["traced", "run"])
@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_each_call_is_a_span_under_the_caller_and_workers_have_process_spans(
    tmp_path, receiver, backend, mode
):
    """8 calls, n_jobs=2: 8 spans named after the function, with their arguments, under the
    span current at ``Parallel(...)(...)`` (also for batches dispatched later from joblib's
    callback threads); 2 worker process spans; nothing ERROR, loky's shutdown at exit
    included."""
    run = _run(tmp_path, receiver, backend, mode)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[0, 3, 6, 9, 12, 15, 18, 21]"
    spans = settle(receiver, 11)  # caller, 8 calls, 2 workers
    named = by_name(spans)
    assert set(named) == {"caller", "scale", WORKERS[backend]}
    (caller,) = named["caller"]
    calls = named["scale"]
    assert sorted(s.attributes["proctrace.args"] for s in calls) == [
        (str(i),) for i in range(8)
    ]
    workers = named[WORKERS[backend]]
    assert len(workers) == 2
    worker_pids = {w.attributes["process.pid"] for w in workers}
    for call in calls:
        assert call.parent_span_id == caller.span_id
        assert call.trace_id == caller.trace_id
        assert call.attributes["proctrace.kwargs.factor"] == "3"
        assert call.attributes["code.function.name"] == "__main__.scale"
        assert call.attributes["process.pid"] in worker_pids
    for worker in workers:
        assert worker.parent_span_id == caller.span_id
        assert "proctrace.args" not in worker.attributes  # queues and locks: not recorded
        assert worker.attributes["process.exit.code"] in (0, -15)
        assert "proctrace.abnormal_end" not in worker.attributes
    if backend == "loky":
        assert {w.attributes["proctrace.start_method"] for w in workers} == {"loky"}
        assert {w.attributes["process.exit.code"] for w in workers} == {0}
    assert [s.name for s in spans if s.status_code == "ERROR"] == []


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_a_failing_call_is_an_error_span_and_its_workers_stop_without_error(
    tmp_path, receiver, backend
):
    """The exception reaches the caller as without proctrace; its call's span is ERROR. joblib
    then stops the workers (loky kills them): the pool's doing, not a failure."""
    run = _run(tmp_path, receiver, backend, "traced", "fail")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "raised 5"
    spans = receiver.wait_for_spans(4, timeout=15)
    spans = by_name(settle(receiver, len(spans) if len(spans) > 4 else 4))
    failed = [s for s in spans["scale"] if s.status_code == "ERROR"]
    assert [s.attributes["proctrace.args"] for s in failed] == [("5",)]
    (exception,) = [e for e in failed[0].events if e.name == "exception"]
    assert exception.attributes["exception.type"] == "ValueError"
    workers = spans[WORKERS[backend]]
    assert len(workers) == 2
    for worker in workers:
        assert worker.status_code == "UNSET"
        assert "proctrace.abnormal_end" not in worker.attributes


def test_proctrace_does_not_import_joblib():
    """The hook waits for the program's own import of joblib."""
    code = "import sys, proctrace; proctrace.instrument(); print('joblib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean_env(OTEL_SDK_DISABLED="true"),
        capture_output=True, text=True, timeout=60,
    )
    assert out.stdout.strip() == "False", out.stderr


OUTLIVED = """
import os, sys, time
from joblib import Parallel, delayed

def pid(x):
    time.sleep(0.05)
    return os.getpid()

if __name__ == "__main__":
    pids = Parallel(n_jobs=2, idle_worker_timeout=5)(delayed(pid)(i) for i in range(6))
    print(*sorted(set(pids)), flush=True)
    os._exit(0)  # no exit hooks: loky's workers outlive the program
"""


def test_loky_workers_outliving_the_program_are_not_errors(tmp_path, receiver):
    """Without loky's own shutdown at exit, its workers are still running when the run ends:
    their spans say so (``proctrace.running_at_exit``) and are not ERROR."""
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(OUTLIVED))
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:  # files, not pipes: the workers
        code = subprocess.call(  # still hold their copies when the program is gone
            [sys.executable, "-m", "proctrace", "run", str(script)], cwd=tmp_path,
            env=clean_env(**receiver.env()), stdout=stdout, stderr=stderr, timeout=120,
        )
    pids = [int(p) for p in out.read_text().split()]
    try:
        assert code == 0, err.read_text()
        spans = by_name(settle(receiver, 9))  # main span, 6 calls, 2 workers
        workers = spans[WORKERS["loky"]]
        assert sorted(w.attributes["process.pid"] for w in workers) == pids
        for worker in workers:
            assert worker.status_code == "UNSET"
            assert worker.attributes["proctrace.running_at_exit"] is True
            assert "proctrace.abnormal_end" not in worker.attributes
        assert len(spans["pid"]) == 6
    finally:
        for pid in pids:  # they would leave after idle_worker_timeout anyway
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
