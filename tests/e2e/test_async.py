"""``@traced async def``: a coroutine function whose span covers the awaited work."""

from __future__ import annotations

from conftest import by_name, settle

MAIN = """
import asyncio, inspect, time
from opentelemetry import trace
from proctrace import traced

tracer = trace.get_tracer("test")

@traced
async def fetch(x):
    await asyncio.sleep(0.2)
    return x * 10

@traced(name="named-fetch")
async def named(x):
    await asyncio.sleep(0)
    return -x

@traced
async def boom(code):
    await asyncio.sleep(0)
    raise ValueError(f"bad {code}")

async def main():
    with tracer.start_as_current_span("caller"):
        coro = fetch(1)
        await asyncio.sleep(0.3)  # the coroutine exists; its work has not started
        print("awaiting", time.time_ns())
        print("fetch", await coro)
        print("gathered", await asyncio.gather(named(2), named(3)))
        try:
            await boom(7)
        except ValueError as exc:
            print("raised", exc)

print("coroutine functions", inspect.iscoroutinefunction(fetch),
      inspect.iscoroutinefunction(named), inspect.iscoroutinefunction(boom))
asyncio.run(main())
"""


def test_an_awaited_traced_coroutine_is_a_span_of_its_awaited_work(run_script, receiver):
    """In the main program: the wrapper is a coroutine function; the span starts when the
    work is awaited (not when the coroutine is made), nests under the awaiting span, also
    for coroutines gathered as tasks; an exception is recorded and re-raised."""
    run = run_script(MAIN, env=receiver.env())
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "coroutine functions True True True"
    assert "fetch 10" in lines and "gathered [-2, -3]" in lines and "raised bad 7" in lines
    awaiting = int(next(line for line in lines if line.startswith("awaiting")).split()[1])
    spans = by_name(settle(receiver, 5))  # caller, fetch, 2 named-fetch, boom
    (caller,) = spans["caller"]
    (fetch,) = spans["fetch"]
    assert fetch.parent_span_id == caller.span_id
    assert fetch.trace_id == caller.trace_id
    assert fetch.start_time_unix_nano >= awaiting  # not the coroutine's creation
    assert 180 <= fetch.duration_ms < 480  # the 0.2 s of awaited work, not the 0.3 s before
    assert fetch.attributes["proctrace.args"] == ("1",)
    assert fetch.attributes["code.function.name"] == "__main__.fetch"
    assert fetch.status_code == "UNSET"
    named = spans["named-fetch"]
    assert sorted(s.attributes["proctrace.args"] for s in named) == [("2",), ("3",)]
    assert {s.parent_span_id for s in named} == {caller.span_id}
    (boom,) = spans["boom"]
    assert boom.parent_span_id == caller.span_id
    assert boom.status_code == "ERROR"
    assert boom.status_message == "ValueError: bad 7"
    (event,) = boom.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "bad 7"


POOL = """
import asyncio, multiprocessing, sys
from opentelemetry import trace
from proctrace import traced

tracer = trace.get_tracer("test")

@traced
async def fetch(x):
    await asyncio.sleep(0.01)
    if x < 0:
        raise KeyError(x)
    return x * 10

@traced
def job(x):
    return asyncio.run(fetch(x))

def plain_job(x):
    return asyncio.run(fetch(x))

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    with tracer.start_as_current_span("submit"):
        with ctx.Pool(2) as pool:
            print(pool.map(job, [1, 2]), pool.map(plain_job, [3]))
            try:
                pool.apply(job, (-4,))
            except KeyError as exc:
                print("raised", exc)
"""


def test_a_traced_coroutine_run_by_a_pool_task_nests_under_the_task(
    run_script, receiver, method
):
    """``def job(x): return asyncio.run(fetch(x))`` as a pool task: fetch's span is under
    job's span when job is traced, under the submitting span when it is not."""
    run = run_script(POOL, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["[10, 20] [30]", "raised -4"]
    # submit, 2 workers, 3 job, 4 fetch
    spans = by_name(settle(receiver, 10))
    (submit,) = spans["submit"]
    jobs = {s.attributes["proctrace.args"]: s for s in spans["job"]}
    fetches = {s.attributes["proctrace.args"]: s for s in spans["fetch"]}
    assert set(jobs) == {("1",), ("2",), ("-4",)}
    assert set(fetches) == {("1",), ("2",), ("3",), ("-4",)}
    for args, job in jobs.items():
        assert job.parent_span_id == submit.span_id
        assert fetches[args].parent_span_id == job.span_id
        assert fetches[args].attributes["process.pid"] == job.attributes["process.pid"]
        assert fetches[args].attributes["proctrace.start_method"] == method
    assert fetches[("3",)].parent_span_id == submit.span_id  # plain_job is not traced
    assert fetches[("-4",)].status_code == "ERROR"
    assert fetches[("-4",)].events[0].attributes["exception.type"] == "KeyError"
    assert jobs[("-4",)].status_code == "ERROR"
    assert all(fetches[a].status_code == "UNSET" for a in (("1",), ("2",), ("3",)))
    workers = spans["multiprocessing.pool.worker"]
    assert len(workers) == 2
    assert {w.parent_span_id for w in workers} == {submit.span_id}
