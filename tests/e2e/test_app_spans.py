"""The program's own OpenTelemetry API spans in traced processes, tasks and pool workers: they
arrive under the span current where they were made, under every start method, with or without
the application's own SDK provider, and survive os._exit and terminate()."""

from __future__ import annotations

import json

import pytest
from conftest import by_name, settle


def test_api_spans_in_a_child_arrive_under_its_span(run_script, receiver, method):
    """A module-level tracer used in a child: its spans nest under the process span, in the
    run's trace, with their scope, attributes and events."""
    source = """
    import multiprocessing, sys
    from opentelemetry import trace
    from proctrace import traced

    tracer = trace.get_tracer("app.child", "1.2")

    @traced
    def task():
        with tracer.start_as_current_span("inside-child", attributes={"n": 3}) as span:
            span.add_event("halfway", {"done": 0.5})
            with tracer.start_as_current_span("inner"):
                pass

    if __name__ == "__main__":
        p = multiprocessing.get_context(sys.argv[1]).Process(target=task)
        p.start(); p.join()
    """
    run = run_script(source, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 4))
    task, inside, inner = spans["task"][0], spans["inside-child"][0], spans["inner"][0]
    assert inside.parent_span_id == task.span_id
    assert inner.parent_span_id == inside.span_id
    assert {s.trace_id for s in (task, inside, inner)} == {spans["prog"][0].trace_id}
    assert inside.scope_name == "app.child"
    assert inside.attributes == {"n": 3}
    assert [(e.name, e.attributes) for e in inside.events] == [("halfway", {"done": 0.5})]
    assert {s.resource["service.name"] for s in receiver.spans} == {"prog"}


def test_the_api_imported_only_inside_the_target_still_nests(run_script, receiver, method):
    """The program imports OpenTelemetry only inside a traced function two calls deep in the
    target: its span nests under that function's span, and spans made after each traced call
    returned nest under the span around it again."""
    source = """
    import multiprocessing, sys
    from proctrace import traced

    def span(name):
        from opentelemetry import trace
        return trace.get_tracer("late").start_as_current_span(name)

    @traced
    def deep():
        with span("in-deep"):
            pass

    @traced
    def helper():
        deep()
        with span("after-deep"):
            pass

    @traced
    def task():
        helper()
        with span("after-helper"):
            pass

    if __name__ == "__main__":
        p = multiprocessing.get_context(sys.argv[1]).Process(target=task)
        p.start(); p.join()
        print("main loaded the API:", "opentelemetry.trace" in sys.modules)
    """
    run = run_script(source, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    spans = {name: found[0] for name, found in by_name(settle(receiver, 7)).items()}
    assert spans["helper"].parent_span_id == spans["task"].span_id
    assert spans["deep"].parent_span_id == spans["helper"].span_id
    assert spans["in-deep"].parent_span_id == spans["deep"].span_id
    assert spans["after-deep"].parent_span_id == spans["helper"].span_id
    assert spans["after-helper"].parent_span_id == spans["task"].span_id
    assert len({s.trace_id for s in receiver.spans}) == 1
    assert "main loaded the API: False" in run.stdout


def test_api_spans_in_pool_tasks_and_pool_workers(run_script, receiver, method):
    """A span made in a pool's initializer nests under the worker's span, one made in a task
    under the task's span."""
    source = """
    import multiprocessing, sys
    from opentelemetry import trace
    from proctrace import traced

    tracer = trace.get_tracer("app")

    def init():
        with tracer.start_as_current_span("in-initializer"):
            pass

    @traced
    def work(x):
        with tracer.start_as_current_span("in-task") as span:
            span.set_attribute("x", x)
        return x * 2

    if __name__ == "__main__":
        ctx = multiprocessing.get_context(sys.argv[1])
        with tracer.start_as_current_span("batch"):
            pool = ctx.Pool(1, initializer=init)
            print(pool.map(work, [1, 2]))
            pool.close(); pool.join()
    """
    run = run_script(source, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert "[2, 4]" in run.stdout
    spans = by_name(settle(receiver, 7))
    worker = spans["multiprocessing.pool.worker"][0]
    assert spans["in-initializer"][0].parent_span_id == worker.span_id
    tasks = {s.span_id: s for s in spans["work"]}
    assert sorted(s.attributes["x"] for s in spans["in-task"]) == [1, 2]
    assert {s.parent_span_id for s in spans["in-task"]} == set(tasks)
    assert len({s.trace_id for s in receiver.spans}) == 1


def test_ended_spans_survive_os_exit_and_terminate(run_script, receiver, method):
    """Each API span is sent as it ends: a child that leaves with os._exit and one that its
    starter terminates still deliver the spans they ended."""
    source = """
    import multiprocessing, os, sys, time
    from opentelemetry import trace
    from proctrace import traced

    tracer = trace.get_tracer("app")

    @traced
    def leaves():
        with tracer.start_as_current_span("before-exit"):
            pass
        os._exit(3)

    @traced
    def sleeps(ready):
        with tracer.start_as_current_span("before-terminate"):
            pass
        ready.set()
        time.sleep(60)

    if __name__ == "__main__":
        ctx = multiprocessing.get_context(sys.argv[1])
        ready = ctx.Event()
        a = ctx.Process(target=leaves)
        b = ctx.Process(target=sleeps, args=(ready,))
        a.start(); b.start()
        assert ready.wait(30)
        b.terminate()
        a.join(); b.join()
        print(a.exitcode, b.exitcode)
    """
    run = run_script(source, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["3", "-15"]
    spans = by_name(settle(receiver, 5))
    assert spans["before-exit"][0].parent_span_id == spans["leaves"][0].span_id
    assert spans["before-terminate"][0].parent_span_id == spans["sleeps"][0].span_id


OWN_PROVIDER = """
import multiprocessing, sys
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from proctrace import traced

memory = InMemorySpanExporter()
tracer = trace.get_tracer("app")


def install():
    provider = TracerProvider(resource=Resource.create({"service.name": "own-provider"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    return provider

if WHERE == "module":  # fork children inherit it, spawn children build it again
    provider = install()

@traced
def task():
    with tracer.start_as_current_span("inside-child"):
        pass
    print("child memory", len(memory.get_finished_spans()), flush=True)

if __name__ == "__main__":
    if WHERE == "main":
        provider = install()
    with tracer.start_as_current_span("app-span"):
        p = multiprocessing.get_context(sys.argv[1]).Process(target=task)
        p.start(); p.join()
    print("main memory", sorted(s.name for s in memory.get_finished_spans()), flush=True)
    provider.shutdown()
"""


@pytest.mark.parametrize("where", ["main", "module"])
def test_the_application_provider_receives_child_api_spans_once(
    run_script, receiver, method, where
):
    """With the application's own provider (BatchSpanProcessor to OTLP, plus an in-memory
    exporter), a child's API span reaches that provider's processors in the main process,
    exactly once: a fork child's inherited batch (lost at os._exit) and a spawn child's own
    copy of the provider are bypassed."""
    source = OWN_PROVIDER.replace("WHERE", repr(where))
    run = run_script(source, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert "child memory 0" in run.stdout
    assert "main memory ['app-span', 'inside-child', 'task']" in run.stdout, run.stdout
    spans = by_name(settle(receiver, 3))
    task = spans["task"][0]
    assert task.parent_span_id == spans["app-span"][0].span_id
    assert spans["inside-child"][0].parent_span_id == task.span_id
    assert {s.resource["service.name"] for s in receiver.spans} == {"own-provider"}
    assert "Overriding" not in run.stderr


def test_a_provider_the_child_installs_itself_is_diverted_too(run_script, receiver, method):
    """A target that sets its own SDK provider: its spans still travel over the child's
    connection to the run, not into that provider's processors."""
    source = """
    import multiprocessing, sys
    from opentelemetry import trace
    from proctrace import traced

    @traced
    def task():
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        trace.set_tracer_provider(provider)
        assert trace.get_tracer_provider() is provider
        with trace.get_tracer("own").start_as_current_span("own-provider-span"):
            pass
        print("child memory", len(memory.get_finished_spans()), flush=True)

    if __name__ == "__main__":
        p = multiprocessing.get_context(sys.argv[1]).Process(target=task)
        p.start(); p.join()
    """
    run = run_script(source, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert "child memory 0" in run.stdout
    spans = by_name(settle(receiver, 3))
    assert spans["own-provider-span"][0].parent_span_id == spans["task"][0].span_id
    assert "Overriding" not in run.stderr


def test_children_load_the_sdk_only_when_they_make_a_span(run_script, receiver):
    """A spawn child of a plain traced program loads neither OpenTelemetry nor logging, nor
    proctrace's modules for them; one whose program imports the API but makes no span there
    loads the API only, not the SDK."""
    source = """
    import json, multiprocessing, sys
    from proctrace import traced

    def loaded():
        return sorted(m for m in sys.modules if m.startswith(("opentelemetry", "logging"))
                      or m in ("proctrace._child.otel", "proctrace._child.provider",
                               "proctrace._child.stdlog"))

    @traced
    def plain():
        print(json.dumps(["plain", loaded()]), flush=True)

    @traced
    def with_api():
        from opentelemetry import trace
        trace.get_current_span()
        print(json.dumps(["api", loaded()]), flush=True)

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("spawn")
        for target in (plain, with_api):
            p = ctx.Process(target=target)
            p.start(); p.join()
    """
    run = run_script(source, env=receiver.env())
    assert run.returncode == 0, run.stderr
    seen = dict(json.loads(line) for line in run.stdout.splitlines())
    assert seen["plain"] == []
    assert "proctrace._child.otel" in seen["api"]
    assert not [m for m in seen["api"] if m.startswith("opentelemetry.sdk")], seen["api"]
    assert "proctrace._child.provider" not in seen["api"]
    settle(receiver, 3)


POOL_OWN_PROVIDER = """
import multiprocessing, sys, time
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from proctrace import traced

memory = InMemorySpanExporter()

@traced
def square(n):
    return n * n

if __name__ == "__main__":
    provider = TracerProvider(resource=Resource.create({"service.name": "own-provider"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    with trace.get_tracer("app").start_as_current_span("app-span"):
        with multiprocessing.get_context(sys.argv[1]).Pool(2) as pool:
            assert pool.map(square, range(20), chunksize=1) == [n * n for n in range(20)]
    # Task spans reach the provider as the run's collector thread reads them, after the
    # results came back: wait for them (it is not what this test is about).
    for _ in range(500):
        if sum(s.name == "square" for s in memory.get_finished_spans()) == 20:
            break
        time.sleep(0.01)
    provider.shutdown()
    finished = memory.get_finished_spans()
    app = next(span.context.span_id for span in finished if span.name == "app-span")
    for span in finished:
        if span.name == "square":
            print("task", span.parent.span_id == app, dict(span.attributes), flush=True)
"""


def test_pool_task_spans_reach_the_application_provider_whole(run_script):
    """Pool task spans travel encoded as OTLP from their worker; the application's own provider
    (in the main process) still gets each as an SDK span with every attribute."""
    run = run_script(POOL_OWN_PROVIDER, "spawn")
    assert run.returncode == 0, run.stderr
    tasks = [line for line in run.stdout.splitlines() if line.startswith("task ")]
    assert len(tasks) == 20, run.stdout
    for line in tasks:
        assert line.startswith("task True "), line
        assert "'proctrace.args': (" in line and "proctrace.task.cpu_s" in line, line
        assert "'process.pid': " in line and "'code.function.name': '__main__.square'" in line
