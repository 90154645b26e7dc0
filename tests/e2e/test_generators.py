"""``@traced`` on a generator function: the span covers the iteration, not the creation."""

from __future__ import annotations

from conftest import by_name, settle

CHILD = """
import asyncio, inspect, multiprocessing, sys, time
from proctrace import traced

@traced
def step(i):
    return i

@traced
def rows(n):
    for i in range(n):
        time.sleep(0.05)
        step(i)  # made while the generator's body runs: nested under its span
        if i == 3:
            raise ValueError("bad row")
        got = yield i
        if got is not None:
            print("got", got)

@traced
def endless():
    i = 0
    while True:
        yield i
        i += 1

@traced
def consumer_side(x):
    return x

@traced
async def arows(n):
    for i in range(n):
        await asyncio.sleep(0.05)
        yield i

async def consume_async():
    return [i async for i in arows(3)]

@traced
def target():
    gen = rows(5)
    time.sleep(0.3)  # made, not yet iterated: not in the span
    print("first", next(gen))
    consumer_side("between")  # the consumer's own call, between two items
    print("sent", gen.send("hello"))
    try:
        for r in gen:
            print("row", r)
    except ValueError as exc:
        print("caught", exc)
    for i in endless():
        if i == 2:
            break  # closed early: not a failure
    print("async", asyncio.run(consume_async()))

if __name__ == "__main__":
    print("kinds", inspect.isgeneratorfunction(rows), inspect.isasyncgenfunction(arows))
    p = multiprocessing.get_context(sys.argv[1]).Process(target=target)
    p.start(); p.join()
    print("exit", p.exitcode)
"""


def test_a_traced_generator_is_a_span_of_its_iteration(run_script, receiver, method):
    """In a child under each start method: the wrapper is still a generator function (and an
    async generator function for ``async def`` with ``yield``); the span starts at the first
    resume, covers every item's work until the generator raises (ERROR, its exception) or
    is closed early (UNSET); what the body calls nests under it, what the consumer calls
    between items does not; values sent in arrive."""
    run = run_script(CHILD, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    out = run.stdout.splitlines()
    assert out[0] == "kinds True True"
    assert out[1:] == [
        "first 0", "got hello", "sent 1", "row 2", "caught bad row", "async [0, 1, 2]",
        "exit 0",
    ], run.stdout
    spans = by_name(settle(receiver, 10))  # main, target, rows, 4 steps, between, endless, arows
    (target,) = spans["target"]
    (rows,) = spans["rows"]
    assert rows.parent_span_id == target.span_id
    assert rows.status_code == "ERROR"
    assert rows.status_message == "ValueError: bad row"
    assert [e.name for e in rows.events] == ["exception"]
    assert 190 <= rows.duration_ms < 290, rows.duration_ms  # 4 x 0.05 s, not the 0.3 s before
    assert sorted(s.attributes["proctrace.args"] for s in spans["step"]) == [
        ("0",), ("1",), ("2",), ("3",)
    ]
    assert {s.parent_span_id for s in spans["step"]} == {rows.span_id}
    (between,) = spans["consumer_side"]
    assert between.parent_span_id == target.span_id  # not the generator's
    (endless,) = spans["endless"]
    assert endless.status_code == "UNSET" and endless.parent_span_id == target.span_id
    (arows,) = spans["arows"]
    assert arows.status_code == "UNSET" and arows.parent_span_id == target.span_id
    assert 140 <= arows.duration_ms < 400, arows.duration_ms
