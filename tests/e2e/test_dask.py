"""Dask distributed: a span per task execution under the span that submitted it, in both
topologies (a ``LocalCluster`` the traced program starts, and a scheduler and workers started
as separate processes with ``--preload proctrace.dask`` or the ``WorkerPlugin``), a worker
killed mid-task ending its task's span ERROR, and Dask's retry a span of its own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, clean_env

from proctrace.testing import OTLPReceiver, ReceivedSpan

pytest.importorskip("distributed")

TASK_NAMES = ("inc", "boom", "die")

LOCAL = """
import os, signal, sys
import dask, dask.bag
from distributed import Client, LocalCluster
from opentelemetry import trace
from proctrace import traced

tracer = trace.get_tracer("test")
MARK = sys.argv[1]
LIMIT = 1

@traced
def over(x):
    return x > LIMIT

def inc(x, secret=None):
    return x + 1

def boom(x):
    raise ValueError(x)

def double(x):
    return 2 * x

def die(x):
    if not os.path.exists(MARK):  # the first attempt: its worker is killed mid-task
        open(MARK, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return x

if __name__ == "__main__":
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, Client(cluster) as client:
        with tracer.start_as_current_span("caller"):
            assert client.submit(inc, 1, secret="hunter2").result() == 2
            assert client.gather(client.map(inc, [10, 20])) == [11, 21]
            assert dask.compute(dask.delayed(inc)(dask.delayed(inc)(100)))[0] == 102
            chain = dask.bag.from_sequence([1, 2, 3, 4], npartitions=2).map(double)
            assert chain.sum().compute() == 20  # Dask fuses each partition's chain
            with client.get_executor() as executor:
                assert executor.submit(inc, 5).result() == 6
            try:
                client.submit(boom, 3, retries=1).result()
            except ValueError:
                pass
            assert client.submit(die, 7).result() == 7
            # A @traced function carries the globals of when its work was submitted.
            assert client.gather(client.map(over, [3, 30])) == [True, True]
            LIMIT = 5
            assert client.gather(client.map(over, [4, 40])) == [False, True]
    print("done")
"""


def _spans(receiver: OTLPReceiver, count: int, wanted: object = None) -> list[ReceivedSpan]:
    deadline = time.monotonic() + 20
    while True:
        spans = [s for s in receiver.spans if wanted is None or wanted(s)]  # type: ignore[operator]
        if len(spans) >= count or time.monotonic() > deadline:
            return spans
        time.sleep(0.05)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[ReceivedSpan], str]]:
    """One traced program on a LocalCluster; its spans."""
    tmp = tmp_path_factory.mktemp("local")
    script = tmp / "prog.py"
    script.write_text(textwrap.dedent(LOCAL))
    with OTLPReceiver("grpc") as receiver:
        proc = subprocess.run(
            [sys.executable, "-m", "proctrace", "run", str(script), str(tmp / "mark")],
            cwd=tmp,
            env=clean_env(**receiver.env(), PROCTRACE_LOG_FORMAT="json"),
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        time.sleep(0.3)
        yield receiver.spans, proc.stderr


def test_local_cluster_tasks_nest_under_the_submitting_span(local_run) -> None:
    spans, _ = local_run
    caller = next(s for s in spans if s.name == "caller")
    tasks = [s for s in spans if s.name == "inc"]
    # submit, map (2), two delayed, the executor
    assert len(tasks) == 6, [s.name for s in spans]
    for task in tasks:
        assert task.trace_id == caller.trace_id
        assert task.parent_span_id == caller.span_id
        attrs = task.attributes
        assert attrs["proctrace.dask.key"].startswith("inc-")
        assert attrs["proctrace.dask.worker"].startswith("tcp://127.0.0.1:")
        assert attrs["thread.name"] and isinstance(attrs["thread.id"], int)
        assert attrs["host.name"] == socket.gethostname()
        assert attrs["process.pid"] != caller.attributes.get("process.pid")
    workers = [s for s in spans if s.name == "dask worker"]
    assert {t.attributes["process.pid"] for t in tasks} <= {
        w.attributes["process.pid"] for w in workers
    }
    submitted = next(t for t in tasks if list(t.attributes["proctrace.args"]) == ["1"])
    assert submitted.attributes["proctrace.kwargs.secret"] != "'hunter2'"  # redacted


def test_a_traced_function_runs_with_the_globals_of_its_submission(local_run) -> None:
    """The function's bytes are made once per submission (not per task), and a worker loads
    them once: a global changed between two submissions is seen by the second."""
    spans, _ = local_run
    caller = next(s for s in spans if s.name == "caller")
    runs = sorted(
        (int(s.attributes["proctrace.args"][0]), s) for s in spans if s.name == "over"
    )
    assert [n for n, _ in runs] == [3, 4, 30, 40]
    for _, span in runs:
        assert span.parent_span_id == caller.span_id
        assert span.attributes["code.function.name"] == "__main__.over"
        assert span.attributes["proctrace.dask.attempt"] == 1


def test_a_fused_task_is_named_as_dask_names_it(local_run) -> None:
    """Under ``proctrace run`` every task is traced, also those whose function is Dask's own
    (a bag's map_chunk, a fused chain's _execute_subgraph): their spans are named after the
    task's key, as Dask's dashboard names them, and list the tasks fused into them; Dask's
    internal arguments are not recorded."""
    spans, _ = local_run
    caller = next(s for s in spans if s.name == "caller")
    names = {s.name for s in spans}
    assert not names & {"_execute_subgraph", "map_chunk"}, names
    fused = [s for s in spans if "proctrace.dask.fused" in s.attributes]
    assert len(fused) >= 2, names  # one per partition at least
    for span in fused:
        assert span.parent_span_id == caller.span_id
        assert span.name in span.attributes["proctrace.dask.fused"]
        assert span.attributes["proctrace.dask.key"].lstrip("('").startswith(span.name + "-")
        assert "proctrace.args" not in span.attributes
    chains = [s for s in fused if "double" in s.attributes["proctrace.dask.fused"]]
    assert len(chains) == 2, [s.attributes["proctrace.dask.fused"] for s in fused]


def test_local_cluster_failure_and_retries(local_run) -> None:
    spans, _ = local_run
    booms = [s for s in spans if s.name == "boom"]
    assert len(booms) == 2  # retries=1: two executions, two spans
    for boom in booms:
        assert boom.status_code == "ERROR"
        assert boom.status_message == "ValueError: 3"
        assert [e.name for e in boom.events] == ["exception"]
        assert boom.attributes["proctrace.dask.retries"] == 1
    first, second = sorted(booms, key=lambda b: b.attributes["proctrace.dask.attempt"])
    assert [
        first.attributes["proctrace.dask.attempt"],
        second.attributes["proctrace.dask.attempt"],
    ] == [1, 2]
    assert first.links == ()
    assert second.links == ((first.trace_id, first.span_id, {"proctrace.dask.attempt": 1}),)


def test_local_cluster_worker_killed_mid_task(local_run) -> None:
    spans, _ = local_run
    dies = sorted((s for s in spans if s.name == "die"), key=lambda s: s.start_time_unix_nano)
    assert [d.status_code for d in dies] == ["ERROR", "UNSET"], dies
    killed, retried = dies
    assert "process ended before its span did" in killed.status_message
    assert killed.attributes["proctrace.abnormal_end"] is True
    assert killed.attributes["proctrace.dask.attempt"] == 1
    assert retried.attributes["proctrace.dask.attempt"] == 2  # counted by the scheduler
    assert killed.attributes["process.pid"] != retried.attributes["process.pid"]
    assert killed.parent_span_id == retried.parent_span_id
    # the retry links to the span of the run killed: its id was derived, not sent
    assert retried.links == ((killed.trace_id, killed.span_id, {"proctrace.dask.attempt": 1}),)
    workers = [s for s in spans if s.name == "dask worker"]
    assert len(workers) == 3  # two, and the one the nanny started after the kill
    pid = killed.attributes["process.pid"]
    dead = next(w for w in workers if w.attributes["process.pid"] == pid)
    assert dead.status_code == "ERROR"


# ---- a scheduler and workers started as separate processes, as on other machines ----

CLIENT = """
import os, signal, sys, time
import dask
from distributed import Client
from opentelemetry import trace
import proctrace.dask

tracer = trace.get_tracer("test")
address, mark, pidfile = sys.argv[1:4]

def inc(x):
    return x + 1

def slow(x):
    if not os.path.exists(mark):  # the first attempt: killed by the client below
        open(pidfile + ".tmp", "w").write(str(os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
        open(mark, "w").close()
        time.sleep(60)
    return x

with Client(address) as client:
    client.wait_for_workers(2, timeout=30)
    with tracer.start_as_current_span("submitter"):
        assert client.submit(inc, 1, workers=["a"]).result() == 2
        assert client.gather(client.map(inc, [2, 3], workers=["a"])) == [3, 4]
        assert client.compute(dask.delayed(inc)(10), workers=["a"]).result() == 11
        client.register_plugin(proctrace.dask.WorkerPlugin())
        assert client.submit(inc, 100, workers=["b"]).result() == 101
        future = client.submit(slow, 5)  # the retry goes to whichever worker is up first
        while not os.path.exists(pidfile):
            time.sleep(0.02)
        os.kill(int(open(pidfile).read()), signal.SIGKILL)
        assert future.result(timeout=60) == 5
print("done")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dask(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]],
        cwd=cwd,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="module")
def remote_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[list[ReceivedSpan], Path]]:
    tmp = tmp_path_factory.mktemp("remote")
    address = f"tcp://127.0.0.1:{_free_port()}"
    started: list[subprocess.Popen[bytes]] = []
    with OTLPReceiver("grpc") as receiver:
        try:
            started.append(
                _dask(
                    [
                        "scheduler",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        address.rsplit(":", 1)[1],
                        "--no-dashboard",
                        "--preload",  # counts each task's runs across workers
                        "proctrace.dask",
                    ],
                    tmp,
                    clean_env(),
                    tmp / "scheduler.log",
                )
            )
            for name, extra in (("a", ["--preload", "proctrace.dask"]), ("b", [])):
                home = tmp / name
                home.mkdir()
                env = clean_env(**receiver.env(), OTEL_SERVICE_NAME=f"worker-{name}")
                started.append(
                    _dask(
                        [
                            "worker",
                            address,
                            "--name",
                            name,
                            "--host",
                            "127.0.0.1",
                            "--nthreads",
                            "1",
                            "--no-dashboard",
                            *extra,
                        ],
                        home,
                        env,
                        tmp / f"worker-{name}.log",
                    )
                )
            script = tmp / "client.py"
            script.write_text(textwrap.dedent(CLIENT))
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "proctrace",
                    "run",
                    str(script),
                    address,
                    str(tmp / "mark"),
                    str(tmp / "pid"),
                ],
                cwd=tmp,
                env=clean_env(**receiver.env(), OTEL_SERVICE_NAME="client"),
                capture_output=True,
                text=True,
                timeout=90,
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            _spans(receiver, 7, lambda s: s.name in ("inc", "slow"))
        finally:
            for process in reversed(started):  # workers first: their spans end as they close
                process.send_signal(signal.SIGINT)
            for process in reversed(started):
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        time.sleep(0.3)
        yield receiver.spans, tmp


@pytest.mark.slow
def test_remote_worker_tasks_in_the_submitters_trace(remote_run) -> None:
    spans, _ = remote_run
    submitter = next(s for s in spans if s.name == "submitter")
    assert submitter.resource["service.name"] == "client"
    on_a = [s for s in spans if s.name == "inc" and s.resource["service.name"] == "worker-a"]
    assert len(on_a) == 4  # submit, map (2), compute
    for task in on_a:
        assert task.trace_id == submitter.trace_id
        assert task.parent_span_id == submitter.span_id
        assert task.attributes["host.name"] == socket.gethostname()
        assert task.attributes["proctrace.dask.worker"].startswith("tcp://127.0.0.1:")
    workers = [s for s in spans if s.name == "dask worker"]
    assert {w.resource["service.name"] for w in workers} == {"worker-a", "worker-b"}
    for worker in workers:
        assert worker.attributes["host.name"] == socket.gethostname()
        assert worker.attributes["proctrace.dask.worker"].startswith("tcp://127.0.0.1:")


@pytest.mark.slow
def test_remote_worker_plugin(remote_run) -> None:
    spans, _ = remote_run
    submitter = next(s for s in spans if s.name == "submitter")
    (task,) = [s for s in spans if s.name == "inc" and s.resource["service.name"] == "worker-b"]
    assert task.parent_span_id == submitter.span_id
    assert list(task.attributes["proctrace.args"]) == ["100"]


@pytest.mark.slow
def test_remote_worker_killed_mid_task(remote_run) -> None:
    spans, _ = remote_run
    slow = sorted((s for s in spans if s.name == "slow"), key=lambda s: s.start_time_unix_nano)
    assert [s.status_code for s in slow] == ["ERROR", "UNSET"], slow
    killed, retried = slow
    assert "process ended before its span did" in killed.status_message
    assert {killed.resource["service.name"], retried.resource["service.name"]} <= {
        "worker-a",
        "worker-b",
    }
    assert killed.attributes["process.pid"] != retried.attributes["process.pid"]
    assert killed.trace_id == retried.trace_id
    assert [
        killed.attributes["proctrace.dask.attempt"],
        retried.attributes["proctrace.dask.attempt"],
    ] == [1, 2]
    assert retried.links == ((killed.trace_id, killed.span_id, {"proctrace.dask.attempt": 1}),)
    pid = killed.attributes["process.pid"]
    dead = [s for s in spans if s.name == "dask worker" and s.attributes["process.pid"] == pid]
    assert [d.status_code for d in dead] == ["ERROR"]


def test_nothing_from_dask_is_imported_by_proctrace() -> None:
    code = (
        "import sys, proctrace; proctrace.instrument();"
        "import multiprocessing.pool;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=clean_env(),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.stdout.strip() == "[]", out.stderr
    assert os.path.exists(ROOT / "proctrace" / "dask.py")
