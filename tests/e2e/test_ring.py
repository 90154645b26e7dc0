"""The ring between real processes: records whole and once, and none lost when the writer dies."""

from __future__ import annotations

import os
import time

import pytest
from conftest import by_name

from proctrace._agent import rings
from proctrace._child import ring as writer_side
from proctrace._core import ring as fmt
from proctrace._otlp import files


def test_a_writer_in_another_process_is_read_whole_once_and_in_order():
    """A forked writer publishes 50,000 records as fast as it can while this process reads:
    every record arrives exactly once, in order, none torn (positions are whole words)."""
    writer = writer_side.create(1 << 16)
    if writer is None:
        pytest.skip("no memfd_create here")
    reader = rings.Reader(os.dup(writer.fd))
    count = 50_000
    pid = os.fork()
    if pid == 0:  # the writer
        try:
            for i in range(count):
                body = i.to_bytes(4, "little") * (1 + i % 40)
                while not writer.put(fmt.SPAN, body):
                    time.sleep(0)
        finally:
            os._exit(0)
    seen = 0
    deadline = time.monotonic() + 60
    while seen < count and time.monotonic() < deadline:
        records, refused = reader.take()
        assert refused == 0 and not reader.broken
        for kind, body in records:
            assert kind == fmt.SPAN and body == seen.to_bytes(4, "little") * (1 + seen % 40)
            seen += 1
    os.waitpid(pid, 0)
    assert seen == count
    assert reader.take(final=True) == ([], 0)


POOL_KILLED = """
import multiprocessing, os, signal, sys, time
from proctrace import traced

@traced
def step(x):
    if x == 1:  # the collector has taken the ring by now: the tasks after this go into it
        time.sleep(0.3)
    if x == 300:  # the worker dies in the middle of the map, by SIGKILL
        os.kill(os.getpid(), signal.SIGKILL)
    return x

if __name__ == "__main__":
    pool = multiprocessing.get_context(sys.argv[1]).Pool(1)
    pool.map_async(step, range(400), chunksize=1)
    time.sleep(1.2)  # the task that killed its worker is lost to multiprocessing itself
    pool.terminate()
    pool.join()
"""


def test_a_pool_worker_killed_mid_map_loses_none_of_its_finished_tasks(
    run_script, receiver, method
):
    """Task spans published in a worker's ring before SIGKILL are all read once its
    connection ends: 0..299 ran in the first worker, each once; 300, the task that killed
    it, is ended ERROR as its worker was (``test_cut_off.py`` has the rest of that)."""
    run = run_script(POOL_KILLED, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    receiver.wait_for_spans(300 + 1, timeout=30)
    time.sleep(0.5)
    steps = by_name(receiver.spans)["step"]
    shown = sorted(int(s.attributes["proctrace.args"][0]) for s in steps)
    assert shown[:301] == list(range(301)) and shown.count(300) == 1
    killer = next(s for s in steps if s.attributes["proctrace.args"] == ("300",))
    assert killer.status_code == "ERROR"
    assert all(s.status_code == "UNSET" for s in steps if s is not killer)
    assert len(shown) == len(set(shown))


POOL_TO_FILE = """
import multiprocessing, sys
from proctrace import traced

@traced
def step(x):
    return x

if __name__ == "__main__":
    with multiprocessing.get_context(sys.argv[1]).Pool(2) as pool:
        pool.map(step, range(int(sys.argv[2])), chunksize=1)
"""


@pytest.mark.slow
def test_with_no_backend_every_task_span_is_in_the_trace_file(run_script, tmp_path):
    """The default destination, the trace file, takes each span however fast a pool makes
    them (pool workers write into their rings faster than spans were written as JSON): none
    kept as undelivered, none lost at exit."""
    tasks = 30_000
    run = run_script(POOL_TO_FILE, "fork", str(tasks))
    assert run.returncode == 0, run.stderr
    assert "could not be sent" not in run.stderr and "lost" not in run.stderr, run.stderr
    (trace,) = (tmp_path / ".proctrace").glob("*.jsonl")  # no undelivered file
    spans = [
        span
        for request in files.read(str(trace))
        for resource in request["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]
    args = [
        {a["key"]: a["value"] for a in span["attributes"]}["proctrace.args"]
        for span in spans
        if span["name"] == "step"
    ]
    steps = sorted(int(a["arrayValue"]["values"][0]["stringValue"]) for a in args)
    assert steps == list(range(tasks))
    assert len(spans) == tasks + 3  # and the main span, the two workers'


AGENT_KILLED = """
import multiprocessing, os, signal, sys, time
from proctrace import traced

@traced
def f(x):
    return x

def agent():
    for task in os.listdir("/proc/self/task"):
        for pid in open(f"/proc/self/task/{task}/children").read().split():
            try:
                if b"proctrace._agent" in open(f"/proc/{pid}/cmdline", "rb").read():
                    return int(pid)
            except OSError:
                pass

def watch(log):
    # Every connection a worker makes to the collector, a line in ``log``.
    def hook(event, args):
        if event == "socket.connect" and str(args[1]).endswith("collector.sock"):
            with open(log, "a") as out:
                out.write(f"{os.getpid()}\\n")
    sys.addaudithook(hook)

if __name__ == "__main__":
    log = os.path.abspath("connects.log")
    open(log, "w").close()
    with multiprocessing.get_context("fork").Pool(2, initializer=watch, initargs=(log,)) as pool:
        pool.map(f, range(200), chunksize=1)
        os.kill(agent(), signal.SIGKILL)
        time.sleep(0.2)
        before = len(open(log).read().split())
        # 20,000 tasks: ~7 rings' worth per worker, so each fills its ring, then sends
        print("sum", sum(pool.map(f, range(20_000), chunksize=1)), flush=True)
    print("connects after the kill", len(open(log).read().split()) - before)
"""


@pytest.mark.slow  # 4-9 s: 20,200 pool tasks
def test_a_killed_agent_costs_each_process_one_try_and_one_line(run_script, receiver):
    """The agent SIGKILLed under a running pool: the program finishes with every result, each
    worker says once that its spans are lost, and tries to reach the agent once, not again
    for every task (a socket, a connect and a ring each time cost ~100 µs a task)."""
    run = run_script(AGENT_KILLED, env=receiver.env(), timeout=120)
    assert run.returncode == 0, run.stderr
    assert "sum 199990000" in run.stdout
    lost = [line for line in run.stderr.splitlines() if "cannot reach the trace collector" in line]
    pids = [line.split("pid ")[1].split()[0] for line in lost]
    assert len(pids) == len(set(pids)) and 1 <= len(pids) <= 3, lost  # 2 workers, the main
    connects = int(run.stdout.split("connects after the kill")[1])
    assert connects <= 2, connects  # one per worker at most
