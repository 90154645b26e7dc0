"""Samplers decide once per trace, and child processes, pool workers and tasks follow."""

from __future__ import annotations

import time

import pytest
from conftest import by_name, settle

PROGRAM = """
import multiprocessing, sys
from proctrace import traced

@traced
def square(x):
    return x * x

@traced
def child(tag):
    print("child ran", tag, flush=True)

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    procs = [ctx.Process(target=child, args=(i,), name=f"child-{i}") for i in range(2)]
    for p in procs:
        p.start()
    with ctx.Pool(2) as pool:
        print("sum", sum(pool.map(square, range(200), chunksize=1)), flush=True)
    for p in procs:
        p.join()
"""


def _nothing_arrives(receiver) -> None:
    time.sleep(0.3)  # the program has exited, so the agent has already exported everything
    assert receiver.spans == []


@pytest.mark.parametrize(
    "sampler, arg",
    [
        ("always_off", None),
        ("traceidratio", "0"),
        ("parentbased_always_off", None),
        ("parentbased_traceidratio", "0"),
    ],
)
def test_an_unsampled_run_exports_nothing_from_children_workers_or_tasks(
    run_script, receiver, sampler, arg
):
    """With a sampler that drops the trace, 200 pool tasks, two children and the pool's
    workers export not one span (today: 203 of 203)."""
    env = {**receiver.env(), "OTEL_TRACES_SAMPLER": sampler}
    if arg is not None:
        env["OTEL_TRACES_SAMPLER_ARG"] = arg
    run = run_script(PROGRAM + AGENT_CHECK, "fork", env=env)
    assert run.returncode == 0, run.stderr
    assert "sum 2646700" in run.stdout
    assert "cannot reach" not in run.stderr
    # A sampler that samples no trace whatever the parent says needs no collector: its start
    # alone is ~0.2 s of CPU. The parent-based ones may still join a sampled TRACEPARENT.
    agent = "agent yes" if sampler.startswith("parentbased_") else "agent no"
    assert agent in run.stdout, run.stdout
    _nothing_arrives(receiver)


AGENT_CHECK = """
    import os
    tasks = os.listdir("/proc/self/task")
    kids = " ".join(open(f"/proc/self/task/{t}/children").read() for t in tasks)
    cmdlines = []
    for pid in kids.split():
        try:
            cmdlines.append(open(f"/proc/{pid}/cmdline", "rb").read())
        except OSError:
            pass
    print("agent", "yes" if any(b"proctrace._agent" in c for c in cmdlines) else "no", flush=True)
"""


def test_always_off_ignores_a_sampled_traceparent_and_starts_no_agent(run_script, receiver):
    """always_off decides no whatever the parent says: a program handed a sampled trace in
    TRACEPARENT records nothing either, and its children log with that trace's id."""
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    env = {
        **receiver.env(),
        "OTEL_TRACES_SAMPLER": "always_off",
        "TRACEPARENT": f"00-{trace_id}-00f067aa0ba902b7-01",
    }
    run = run_script(PROGRAM + AGENT_CHECK, "forkserver", env=env)
    assert run.returncode == 0, run.stderr
    assert "agent no" in run.stdout and "cannot reach" not in run.stderr
    started = run.events("process started")
    assert started and {entry["trace_id"] for entry in started} == {trace_id}
    _nothing_arrives(receiver)


def test_unsampled_children_still_log_with_trace_ids(run_script, receiver, method):
    """Under every start method, an unsampled child records nothing but its log lines carry
    the trace id, and its own span id, as OpenTelemetry's logs do when unsampled."""
    env = {**receiver.env(), "OTEL_TRACES_SAMPLER": "always_off"}
    run = run_script(PROGRAM, method, env=env)
    assert run.returncode == 0, run.stderr
    started = [e for e in run.events("process started") if e["process_name"].startswith("child")]
    assert len(started) == 2
    assert len({entry["trace_id"] for entry in started}) == 1
    assert all(len(entry["span_id"]) == 16 for entry in started)
    _nothing_arrives(receiver)


@pytest.mark.parametrize("sampler", ["always_on", "traceidratio", "parentbased_traceidratio"])
def test_a_sampled_run_exports_every_span_under_its_parent(run_script, receiver, sampler):
    """Ratio 1 (and always_on) keeps the whole trace: main, 2 children, 2 workers, 200 tasks,
    every parent exported."""
    env = {**receiver.env(), "OTEL_TRACES_SAMPLER": sampler, "OTEL_TRACES_SAMPLER_ARG": "1"}
    run = run_script(PROGRAM, "fork", env=env)
    assert run.returncode == 0, run.stderr
    spans = settle(receiver, 205)
    ids = {s.span_id for s in spans}
    assert all(s.parent_span_id in ids for s in spans if s.parent_span_id)


def test_a_ratio_keeps_or_drops_each_trace_whole(run_script, receiver):
    """traceidratio 0.5 over several runs: each run's trace is all there or not at all, never
    a child or a task whose parent was dropped."""
    env = {
        **receiver.env(), "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"
    }
    source = PROGRAM.replace("range(200)", "range(4)")
    for _ in range(6):
        run = run_script(source, "fork", env=env)
        assert run.returncode == 0, run.stderr
    time.sleep(0.3)
    traces = by_name(receiver.spans)
    per_trace: dict[str, int] = {}
    for span in receiver.spans:
        per_trace[span.trace_id] = per_trace.get(span.trace_id, 0) + 1
    assert all(n == 9 for n in per_trace.values()), per_trace
    assert len(traces.get("prog", [])) == len(per_trace)


CONFIGURED = """
import multiprocessing, sys
import proctrace
from proctrace import traced

@traced
def child():
    pass

if __name__ == "__main__":
    if sys.argv[2] == "name":
        proctrace.configure(sampler="always_off")
    else:
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        proctrace.configure(sampler=ParentBased(TraceIdRatioBased(0.0)))
    p = multiprocessing.get_context(sys.argv[1]).Process(target=child)
    p.start(); p.join()
"""


@pytest.mark.parametrize("how", ["name", "sdk"])
def test_configure_sampler_by_name_or_sdk_sampler_drops_the_trace(run_script, receiver, how):
    """configure(sampler="always_off") and configure(sampler=ParentBased(TraceIdRatioBased(0)))
    decide for the run and its spawn children."""
    run = run_script(CONFIGURED, "spawn", how, env=receiver.env())
    assert run.returncode == 0, run.stderr
    _nothing_arrives(receiver)


APP_PROVIDER = """
import multiprocessing, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from proctrace import traced

@traced
def square(x):
    return x * x

@traced
def child():
    pass

if __name__ == "__main__":
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF if sys.argv[2] == "off" else ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    ctx = multiprocessing.get_context(sys.argv[1])
    p = ctx.Process(target=child); p.start(); p.join()
    with ctx.Pool(2) as pool:
        pool.map(square, range(10))
    import time; time.sleep(0.5)
    print("app spans", sorted({s.name for s in exporter.get_finished_spans()}), flush=True)
"""


@pytest.mark.parametrize("sampler", ["off", "on"])
def test_an_application_providers_sampler_decides_for_children_and_tasks(run_script, sampler):
    """An application provider with ALWAYS_OFF gets no child, worker or task span (whose
    parents it never exported); with ALWAYS_ON it gets them."""
    run = run_script(APP_PROVIDER, "fork", sampler)
    assert run.returncode == 0, run.stderr
    line = next(x for x in run.stdout.splitlines() if x.startswith("app spans"))
    if sampler == "off":
        assert line == "app spans []"
    else:
        assert "'child'" in line and "'square'" in line


def test_a_bad_sampler_value_names_the_variable(run_script, receiver):
    """OTEL_TRACES_SAMPLER=sometimes is named in the message."""
    env = {**receiver.env(), "OTEL_TRACES_SAMPLER": "sometimes"}
    run = run_script(PROGRAM, "fork", env=env)
    assert "OTEL_TRACES_SAMPLER" in run.stderr
