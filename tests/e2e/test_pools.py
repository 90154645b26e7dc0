"""Pools and executors: task spans under the submitting span, worker spans under the pool's."""

from __future__ import annotations

from conftest import by_name, settle

POOL = """
import multiprocessing, sys, threading
from opentelemetry import trace
from proctrace import traced

tracer = trace.get_tracer("test")

@traced
def square(x):
    return x * x

@traced
def pair(a, b):
    return a + b

@traced
def fail(x):
    raise KeyError(x)

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    with tracer.start_as_current_span("created"):
        pool = ctx.Pool(2)
    results = {}
    with tracer.start_as_current_span("s-map"):
        results["map"] = pool.map(square, [1, 2])
    with tracer.start_as_current_span("s-imap"):
        results["imap"] = list(pool.imap(square, [3]))
    with tracer.start_as_current_span("s-imap_unordered"):
        results["imap_unordered"] = list(pool.imap_unordered(square, [4]))
    with tracer.start_as_current_span("s-starmap"):
        results["starmap"] = pool.starmap(pair, [(5, 5)])
    with tracer.start_as_current_span("s-apply"):
        results["apply"] = pool.apply(square, (6,))
    with tracer.start_as_current_span("s-apply_async"):
        results["apply_async"] = pool.apply_async(square, (7,)).get()
    with tracer.start_as_current_span("s-map_async"):
        results["map_async"] = pool.map_async(square, [8]).get()
    with tracer.start_as_current_span("s-starmap_async"):
        results["starmap_async"] = pool.starmap_async(pair, [(9, 9)]).get()
    with tracer.start_as_current_span("s-error"):
        try:
            pool.apply(fail, ("k",))
        except KeyError as exc:
            results["error"] = repr(exc)

    def from_thread():
        with tracer.start_as_current_span("s-thread"):
            results["thread"] = pool.map(square, [10])

    t = threading.Thread(target=from_thread)
    t.start(); t.join()
    pool.close(); pool.join()
    print(sorted(results.items()))
"""

EXPECTED = (
    "[('apply', 36), ('apply_async', 49), ('error', \"KeyError('k')\"), ('imap', [9]), "
    "('imap_unordered', [16]), ('map', [1, 4]), ('map_async', [64]), ('starmap', [10]), "
    "('starmap_async', [18]), ('thread', [100])]"
)


def test_every_pool_call_parents_its_task_spans_on_the_submitting_span(
    run_script, receiver, method
):
    """map, imap, imap_unordered, starmap, apply and the async forms, also from another thread:
    each task span's parent is the span current where the work was submitted."""
    run = run_script(POOL, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == EXPECTED  # results and exceptions as without proctrace
    spans = by_name(settle(receiver, 24))  # 10 submitting + created + 11 tasks + 2 workers
    submitters = {name[2:]: s[0] for name, s in spans.items() if name.startswith("s-")}
    tasks = spans["square"] + spans["pair"] + spans["fail"]
    assert len(tasks) == 11
    parent_of = {s.span_id: name for name, s in submitters.items()}
    seen = sorted(parent_of[t.parent_span_id] for t in tasks)
    assert seen == sorted(
        ["map", "map", "imap", "imap_unordered", "starmap", "apply", "apply_async",
         "map_async", "starmap_async", "error", "thread"]
    )
    workers = spans["multiprocessing.pool.worker"]
    assert len(workers) == 2
    worker_pids = {w.attributes["process.pid"] for w in workers}
    for worker in workers:
        assert worker.parent_span_id == spans["created"][0].span_id
        assert worker.attributes["proctrace.start_method"] == method
        assert worker.status_code == "UNSET"
    for task in tasks:
        assert task.attributes["process.pid"] in worker_pids
        assert task.attributes["proctrace.start_method"] == method
        assert task.attributes["proctrace.process.name"].endswith(
            tuple(f"PoolWorker-{i}" for i in range(1, 3))
        )
        assert "process.parent_pid" in task.attributes
    (failed,) = spans["fail"]
    assert failed.status_code == "ERROR"
    assert failed.events[0].attributes["exception.type"] == "KeyError"


EXECUTOR = """
import multiprocessing, sys, threading
from concurrent.futures import ProcessPoolExecutor
from opentelemetry import trace
from proctrace import traced

tracer = trace.get_tracer("test")

@traced
def cube(x):
    return x ** 3

def unpicklable_result(x):
    return lambda: x

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    with tracer.start_as_current_span("created"):
        executor = ProcessPoolExecutor(2, mp_context=ctx)
    with tracer.start_as_current_span("s-submit"):
        a = executor.submit(cube, 2).result()
    with tracer.start_as_current_span("s-map"):
        b = list(executor.map(cube, [3, 4], chunksize=1))

    def from_thread():
        with tracer.start_as_current_span("s-thread"):
            print(executor.submit(cube, 5).result())

    t = threading.Thread(target=from_thread)
    t.start(); t.join()
    try:
        executor.submit(cube, lambda: 1).result()
    except Exception as exc:
        print(type(exc).__name__)
    executor.shutdown()
    print(a, b)
"""


def test_executor_submit_and_map_parent_tasks_on_the_submitting_span(
    run_script, receiver, method
):
    """ProcessPoolExecutor.submit and .map: task spans under the submitting span; workers under
    the span where the executor was created; a pickling error reaches the caller unchanged."""
    run = run_script(EXECUTOR, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["125", "PicklingError", "8", "[27,", "64]"]
    # 4 submit spans and "prog" (the lambda was submitted outside spans), 4 tasks, and the
    # workers: spawn and forkserver executors start a worker only when none is idle.
    receiver.wait_for_spans(10)
    spans = by_name(receiver.spans)
    parents = {spans[n][0].span_id: n for n in ("s-submit", "s-map", "s-thread")}
    assert sorted(parents[c.parent_span_id] for c in spans["cube"]) == [
        "s-map", "s-map", "s-submit", "s-thread"
    ]
    workers = spans["concurrent.futures.process._process_worker"]
    assert len(workers) == 2 if method == "fork" else 1 <= len(workers) <= 2
    assert all(w.parent_span_id == spans["created"][0].span_id for w in workers)


def test_recycled_and_terminated_workers_lose_no_finished_task(run_script, receiver, method):
    """maxtasksperchild recycles workers (each gets its own span); a pool left through its
    `with` block (SIGTERM to the workers) and terminate() still deliver every finished task."""
    source = """
    import multiprocessing, sys
    from proctrace import traced

    @traced
    def inc(x):
        return x + 1

    if __name__ == "__main__":
        ctx = multiprocessing.get_context(sys.argv[1])
        with ctx.Pool(2, maxtasksperchild=1) as pool:
            print(pool.map(inc, range(4), chunksize=1))
        pool = ctx.Pool(2)
        print(pool.map(inc, range(3)))
        pool.terminate()
        pool.join()
    """
    run = run_script(source, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:2] == ["[1, 2, 3, 4]", "[1, 2, 3]"]
    receiver.wait_for_spans(1 + 7)
    spans = by_name(receiver.spans)
    assert sorted(s.attributes["proctrace.args"][0] for s in spans["inc"]) == [
        "0", "0", "1", "1", "2", "2", "3"
    ]
    workers = {w.attributes["process.pid"]: w for w in spans["multiprocessing.pool.worker"]}
    tasks = [s for s in spans["inc"] if s.parent_span_id == spans["prog"][0].span_id]
    recycled_pids = {s.attributes["process.pid"] for s in spans["inc"]}
    assert len(tasks) == 7 and len(recycled_pids) >= 5  # maxtasksperchild=1: 4 workers
    assert recycled_pids <= set(workers)  # every worker that ran a task has its span
    for worker in workers.values():
        assert worker.status_code == "UNSET"  # stopped by its pool: not a failure


SHAPES = """
import functools, multiprocessing, sys
from proctrace import traced

@traced
def scale(x, factor, api_key=None):
    return x * factor

class Meter:
    def __init__(self, unit):
        self.unit = unit

    @traced
    def read(self, x):
        return f"{x}{self.unit}"

@traced
def plain(x):
    return x + 1

if __name__ == "__main__":
    with multiprocessing.get_context(sys.argv[1]).Pool(2) as pool:
        print(pool.map(functools.partial(scale, factor=3, api_key="k-123456"), range(6)))
        print(pool.map(Meter("cm").read, range(6)))
        print(pool.map(plain, range(6)), flush=True)
"""


def test_task_spans_of_partials_methods_and_functions_alike(run_script, receiver, method):
    """Tasks of a partial, of a bound method and of a function, six each: every one a span
    with its own arguments as the call sees them (a partial's merged in, a method's self left
    out, secrets redacted), also once the worker reuses what it worked out for the first."""
    run = run_script(SHAPES, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        str([x * 3 for x in range(6)]), str([f"{x}cm" for x in range(6)]), str(list(range(1, 7)))
    ]
    spans = by_name(settle(receiver, 18 + 3))
    scaled = sorted(spans["scale"], key=lambda s: s.attributes["proctrace.args"][0])
    assert [list(s.attributes["proctrace.args"]) for s in scaled] == [[str(x)] for x in range(6)]
    for span in scaled:
        assert span.attributes["proctrace.kwargs.factor"] == "3"
        assert span.attributes["proctrace.kwargs.api_key"] == "[REDACTED]"
    reads = spans["Meter.read"]
    assert sorted(list(s.attributes["proctrace.args"]) for s in reads) == [
        [str(x)] for x in range(6)
    ]
    assert sorted(s.attributes["proctrace.args"][0] for s in spans["plain"]) == list(
        map(str, range(6))
    )
    workers = {s.span_id for s in spans["multiprocessing.pool.worker"]}
    for span in scaled + reads + spans["plain"]:
        assert span.parent_span_id not in workers  # under the program's span, as submitted
        assert "proctrace.task.cpu_s" in span.attributes


UNHASHABLE = """
import dataclasses, multiprocessing, sys
import proctrace

proctrace.instrument()

@dataclasses.dataclass  # eq=True: instances are not hashable
class Scale:
    factor: int

    def __call__(self, x):
        return x * self.factor

if __name__ == "__main__":
    with multiprocessing.get_context(sys.argv[1]).Pool(2) as pool:
        print(pool.map(Scale(3), range(5)), flush=True)
"""


def test_a_callable_instance_that_cannot_be_hashed_is_a_task_like_any(run_script, receiver):
    """Under ``instrument()`` every task is traced, also a call of an instance whose class
    compares by value and so cannot be hashed: it runs, and its span is named after the
    class's ``__call__``."""
    run = run_script(UNHASHABLE, "fork", env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[0, 3, 6, 9, 12]"
    spans = by_name(settle(receiver, 5 + 3))
    assert len(spans["Scale.__call__"]) == 5, list(spans)


ENDED_EARLY = """
import multiprocessing, sys, time
from proctrace import traced

@traced
def work(x):
    return x

if __name__ == "__main__":
    with multiprocessing.get_context(sys.argv[1]).Pool(2) as pool:
        pool.map(work, [1, 2, 3])
    print("pool gone", time.time_ns(), flush=True)  # terminated and joined: the workers too
    time.sleep(0.5)
"""


def test_workers_a_pool_terminated_end_when_they_did(run_script, receiver, method):
    """A pool used and left within the agent's first ~0.2 s (it is still starting: it notices
    no worker's end until then): each worker span ends by the time the pool's exit joined it,
    not when the agent got round to it, and within its parent's span."""
    run = run_script(ENDED_EARLY, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    gone = int(run.stdout.split()[-1])
    spans = by_name(settle(receiver, 6))  # main, 3 tasks, 2 workers
    (main,) = spans["prog"]
    workers = spans["multiprocessing.pool.worker"]
    assert len(workers) == 2
    for worker in workers:
        assert worker.end_time_unix_nano <= gone, (worker.end_time_unix_nano - gone) / 1e6
        assert worker.end_time_unix_nano <= main.end_time_unix_nano
