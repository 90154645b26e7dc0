"""A pool task whose worker dies under it still has its span, ended as its worker was.

The worker holds the running task's span in its ring's slot (``_core.ring``); the agent
takes it once the worker's connection ends and ends it with the worker's span: SIGKILL,
``os._exit``, the pool's own terminate(), the whole group stopped. Each other task's span
arrives once, and a task that finished is never reported as cut off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import ROOT, by_name, clean_env

DURING = "process ended during the task"

EXECUTOR_KILLED = """
import os, signal, sys, multiprocessing
from concurrent.futures import ProcessPoolExecutor
from proctrace import traced

@traced
def work(n, token):
    if n == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return n * 2

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    with ProcessPoolExecutor(1, mp_context=ctx) as ex:
        try:
            print(list(ex.map(work, range(6), ["tk-0123456789"] * 6)))
        except Exception as exc:
            print("broken:", type(exc).__name__)
"""


def test_the_task_that_killed_its_executor_worker_has_its_span(run_script, receiver, method):
    """SIGKILL inside the fourth task of a one-worker executor: tasks 0-2 once each, UNSET;
    task 3 ERROR, its arguments (a secret one redacted), exit code -9, abnormal, inside its
    worker's life, under the span it was submitted from; tasks 4-5 never ran."""
    run = run_script(EXECUTOR_KILLED, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert "broken: BrokenProcessPool" in run.stdout
    receiver.wait_for_spans(6, timeout=30)
    time.sleep(0.5)
    spans = by_name(receiver.spans)
    tasks = {s.attributes["proctrace.args"][0]: s for s in spans["work"]}
    assert sorted(tasks) == ["0", "1", "2", "3"], sorted(tasks)
    assert len(spans["work"]) == 4
    killer = tasks["3"]
    assert all(tasks[n].status_code == "UNSET" for n in "012")
    assert killer.status_code == "ERROR"
    assert killer.status_message == DURING + " (killed, crashed or os._exit)"
    assert killer.attributes["proctrace.abnormal_end"] is True
    assert killer.attributes["process.exit.code"] == -9
    assert killer.attributes["proctrace.args"] == ("3", "[REDACTED]")
    assert "tk-0123456789" not in repr(receiver.spans)
    assert "proctrace.task.cpu_s" not in killer.attributes
    (worker,) = [s for s in receiver.spans if s.name.endswith("_process_worker")]
    assert worker.status_code == "ERROR"
    assert killer.attributes["process.pid"] == worker.attributes["process.pid"]
    assert killer.parent_span_id == tasks["0"].parent_span_id
    assert killer.trace_id == worker.trace_id
    assert worker.start_time_unix_nano <= killer.start_time_unix_nano
    assert killer.start_time_unix_nano <= killer.end_time_unix_nano
    assert killer.end_time_unix_nano <= worker.end_time_unix_nano


POOL_EXITED = """
import os, sys, time, multiprocessing
import proctrace

def crunch(n):
    if n == 7:
        os._exit(7)
    if n == 8:
        time.sleep(60)
    return n

if __name__ == "__main__":
    proctrace.instrument()
    pool = multiprocessing.get_context(sys.argv[1]).Pool(1)
    print(pool.map(crunch, [1, 2]))
    pool.apply_async(crunch, (7,))  # os._exit: multiprocessing replaces the worker
    time.sleep(1.0)
    pool.apply_async(crunch, (8,))  # still running when the pool is terminated
    time.sleep(1.0)
    pool.terminate()
    pool.join()
"""


def test_os_exit_and_terminate_in_a_pool_task_end_its_span_as_the_worker_ended(
    run_script, receiver, method
):
    """``os._exit(7)`` in a task: its span ERROR with exit code 7; the pool's terminate()
    during a sleeping task: ERROR, the pool stopped it (SIGTERM), exit code -15, while the
    worker's own span stays a normal end. Finished tasks: once each, UNSET."""
    run = run_script(POOL_EXITED, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    receiver.wait_for_spans(7, timeout=30)
    time.sleep(0.5)
    spans = by_name(receiver.spans)
    tasks = {s.attributes["proctrace.args"]: s for s in spans["crunch"]}
    assert sorted(tasks) == [("1",), ("2",), ("7",), ("8",)] and len(spans["crunch"]) == 4
    assert tasks[("1",)].status_code == tasks[("2",)].status_code == "UNSET"
    exited = tasks[("7",)]
    assert exited.status_code == "ERROR"
    assert exited.status_message == DURING + " (killed, crashed or os._exit)"
    assert exited.attributes["process.exit.code"] == 7
    assert exited.attributes["proctrace.abnormal_end"] is True
    stopped = tasks[("8",)]
    assert stopped.status_code == "ERROR"
    assert stopped.status_message == DURING + ": its pool stopped it (SIGTERM)"
    assert stopped.attributes["process.exit.code"] == -15
    assert stopped.attributes["proctrace.terminated"] is True
    assert "proctrace.abnormal_end" not in stopped.attributes
    workers = {
        s.attributes["process.pid"]: s for s in receiver.spans if s.name.endswith(".worker")
    }
    assert workers[stopped.attributes["process.pid"]].status_code == "UNSET"
    assert workers[exited.attributes["process.pid"]].status_code == "ERROR"
    assert stopped.duration_ms >= 800


def _ready(tmp_path, source: str, method: str, receiver) -> subprocess.Popen[str]:
    """``source`` started in a session of its own, once it printed "ready"."""
    script = tmp_path / "prog.py"
    script.write_text(source)
    proc = subprocess.Popen(
        [sys.executable, str(script), method], cwd=tmp_path, env=clean_env(**receiver.env()),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n", proc.stderr
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc


GROUP_STOPPED = """
import sys, time, multiprocessing
import proctrace

def nap(n):
    time.sleep(60 if n == 2 else 0)
    return n

if __name__ == "__main__":
    proctrace.instrument()
    pool = multiprocessing.get_context(sys.argv[1]).Pool(1)
    pool.map(nap, [0, 1])
    pool.apply_async(nap, (2,))
    print("ready", flush=True)
    time.sleep(60)
"""


def test_a_task_running_when_the_group_is_stopped_is_reported(tmp_path, receiver, method):
    """SIGTERM to the whole process group while a pool task sleeps: the task's span arrives,
    ERROR, saying the group was stopped by SIGTERM (it was lost before)."""
    proc = _ready(tmp_path, GROUP_STOPPED, method, receiver)
    try:
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        receiver.wait_for_spans(5, timeout=30)
        time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    naps = {s.attributes["proctrace.args"]: s for s in by_name(receiver.spans)["nap"]}
    assert sorted(naps) == [("0",), ("1",), ("2",)]
    cut = naps[("2",)]
    assert cut.status_code == "ERROR"
    assert cut.status_message == DURING + ": ended by SIGTERM sent to the process group"
    assert cut.attributes["proctrace.stopped_by"] == "SIGTERM"


assert ROOT  # the package under test is the one beside the tests (conftest puts it first)


LOKY_BROKEN = """
import os, sys, time
from joblib import Parallel, delayed
import proctrace

def f(x):
    time.sleep(0.05)
    if x == 3:
        os._exit(3)
    return x

if __name__ == "__main__":
    proctrace.instrument()
    try:
        print(Parallel(n_jobs=2)(delayed(f)(i) for i in range(8)))
    except Exception as exc:
        print("caught", type(exc).__name__)
"""


def test_a_loky_worker_that_died_under_a_task_and_the_one_loky_killed_after_it(
    run_script, receiver
):
    """joblib's loky: the worker that ``os._exit(3)`` under ``f(3)`` has exit code 3, and so
    has its task's span; the other worker, which loky SIGKILLs itself once its executor is
    broken, is its pool stopping it (not an abnormal end), and a task it was running then
    says so."""
    run = run_script(LOKY_BROKEN, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert "caught TerminatedWorkerError" in run.stdout
    receiver.wait_for_spans(5, timeout=30)
    time.sleep(1.0)
    spans = by_name(receiver.spans)
    tasks = {s.attributes["proctrace.args"]: s for s in spans["f"]}
    died = tasks[("3",)]
    assert died.status_message == DURING + " (killed, crashed or os._exit)"
    assert died.attributes["process.exit.code"] == 3
    workers = {
        s.attributes["process.pid"]: s for s in receiver.spans if s.name.endswith("_worker")
    }
    assert len(workers) == 2, list(workers)
    dead = workers.pop(died.attributes["process.pid"])
    assert dead.status_code == "ERROR" and dead.attributes["process.exit.code"] == 3
    (other,) = workers.values()
    assert "proctrace.abnormal_end" not in other.attributes, other.status_message
    assert other.status_code == "UNSET"
    for task in tasks.values():
        if task is not died and task.status_code == "ERROR":
            assert task.status_message == DURING + ": its pool stopped it (SIGKILL)"
            assert task.attributes["process.pid"] == other.attributes["process.pid"]


MAIN_KILLED = """
import sys, time, multiprocessing
import proctrace

def nap(n):
    time.sleep(n)
    return n

if __name__ == "__main__":
    proctrace.instrument()
    pool = multiprocessing.get_context(sys.argv[1]).Pool(2)
    pool.map(nap, [0, 0])
    pool.map_async(nap, [30, 30])
    time.sleep(0.5)
    print("ready", flush=True)
    time.sleep(60)
"""


def test_tasks_still_running_when_the_main_process_alone_is_killed_are_reported(
    tmp_path, receiver, method
):
    """SIGTERM to the main process alone while both workers sleep in a task: the workers
    outlive it, and their tasks' spans arrive, ERROR, still running when the program exited
    (they were missing, user trial); the finished tasks once each."""
    proc = _ready(tmp_path, MAIN_KILLED, method, receiver)
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        receiver.wait_for_spans(7, timeout=30)
        time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    naps = by_name(receiver.spans)["nap"]
    assert sorted(s.attributes["proctrace.args"] for s in naps) == [("0",)] * 2 + [("30",)] * 2
    for span in naps:
        if span.attributes["proctrace.args"] == ("30",):
            assert span.status_code == "ERROR"
            assert span.status_message == "task was still running when the traced program exited"
            assert span.attributes["proctrace.running_at_exit"] is True
        else:
            assert span.status_code == "UNSET"
