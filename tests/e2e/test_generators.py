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


EDGES = """
import asyncio, os, sys, multiprocessing
from proctrace import traced

@traced
def gen(n):
    yield n
    yield n + 1

@traced
async def agen():
    got = yield "first"
    try:
        yield ("got", got)
    except ValueError as exc:
        yield ("caught", str(exc))

async def drive():
    g = agen()
    out = [await g.__anext__(), await g.asend(1), await g.athrow(ValueError("v"))]
    await g.aclose()
    return out

@traced
def target():
    print("async", asyncio.run(drive()), flush=True)
    g = gen(1)
    next(g)
    pid = os.fork()  # a copy of the suspended generator: it must not end its span again
    if pid == 0:
        next(g)
        sys.exit(0)
    os.waitpid(pid, 0)
    next(g)

left_open = gen(7)
next(left_open)  # still suspended when the program ends: closed by the garbage collector

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    for t in (gen, target):  # a generator function as the target, then the rest
        p = ctx.Process(target=t, args=(5,) if t is gen else ()); p.start(); p.join()
        print(t.__name__, p.exitcode, flush=True)
"""


def test_a_traced_generator_as_target_unsampled_forked_or_left_open(
    run_script, receiver, method
):
    """A traced generator function as a process target gets the process span any target gets
    (multiprocessing calls it and never iterates it); an unsampled async generator still
    passes asend() and athrow() through; a suspended generator copied by os.fork() ends its
    span once; one still suspended at exit costs no warning."""
    run = run_script(EDGES, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "gen 0", "async ['first', ('got', 1), ('caught', 'v')]", "target 0",
    ], run.stdout
    assert "cannot reach" not in run.stderr and "Traceback" not in run.stderr, run.stderr
    spans = by_name(settle(receiver, 5))  # main, gen (target), agen, target, gen in target
    (main,) = spans["prog"]
    (target,) = spans["target"]
    process = [s for s in spans["gen"]
               if s.parent_span_id == main.span_id and s.attributes["proctrace.args"] == ("5",)]
    assert len(process) == 1 and process[0].status_code == "UNSET"
    assert process[0].attributes["process.exit.code"] == 0
    called = [s for s in spans["gen"] if s.parent_span_id == target.span_id]
    assert len(called) == 1  # once, not once more by the copy os.fork() made of it
    unsampled = run_script(EDGES, method, env={**receiver.env(),
                                               "OTEL_TRACES_SAMPLER": "always_off"})
    assert unsampled.returncode == 0, unsampled.stderr
    assert "async ['first', ('got', 1), ('caught', 'v')]" in unsampled.stdout
