"""The examples users run first, against the real receiver and on the embedded default."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, by_name, clean_env, settle


def _run(args, tmp_path, env=None):
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=clean_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_create_prints_like_the_lesson_and_traces_three_children(tmp_path, receiver, method):
    """`create`: three processes print name/pid/ppid; the trace id and Jaeger address follow."""
    proc = _run(["-m", "proctrace.examples.create", "--method", method], tmp_path, receiver.env())
    spans = by_name(settle(receiver, 4))
    main = spans["proctrace.examples.create"][0]
    assert sorted(s.attributes["proctrace.process.name"] for s in spans["process_task"]) == [
        "process-0", "process-1", "process-2"
    ]
    for i in range(3):
        assert f"process-{i} has pid: " in proc.stdout
    assert "MainProcess has pid: " in proc.stdout
    assert f"trace id: {main.trace_id}" in proc.stdout
    assert f"Jaeger: http://localhost:16686/trace/{main.trace_id}" in proc.stdout


def test_create_on_a_fresh_machine_writes_the_local_trace_file(tmp_path):
    """With nothing configured, the example says where its trace went."""
    proc = _run(["-m", "proctrace.examples.create"], tmp_path)
    assert "Jaeger" not in proc.stdout
    assert "spans (trace " in proc.stderr and ".proctrace/" in proc.stderr
    assert len(list((tmp_path / ".proctrace").glob("*.jsonl"))) == 1


def test_arguments_records_each_argument(tmp_path, receiver, method):
    """`arguments`: positional and keyword arguments on the span, the token redacted."""
    proc = _run(
        ["-m", "proctrace.examples.arguments", "--method", method], tmp_path, receiver.env()
    )
    assert "Received arguments 1 2 3 arg1 arg2" in proc.stdout
    task = by_name(settle(receiver, 2))["process_task"][0]
    assert task.attributes["proctrace.args"] == ("1", "2", "3")
    assert task.attributes["proctrace.kwargs.key2"] == "'arg2'"
    assert task.attributes["proctrace.kwargs.api_token"] == "[REDACTED]"
    assert "s3cr3t" not in proc.stderr


@pytest.mark.parametrize("args", [[], ["--method", "spawn"], ["--method", "forkserver"]])
def test_start_methods_runs_the_task_under_the_chosen_methods(tmp_path, receiver, args):
    """`start_methods`: all three through get_context, or one through set_start_method."""
    _run(["-m", "proctrace.examples.start_methods", *args], tmp_path, receiver.env())
    expected = ["fork", "forkserver", "spawn"] if not args else [args[1]]
    tasks = by_name(settle(receiver, len(expected) + 1))["process_task"]
    assert sorted(t.attributes["proctrace.start_method"] for t in tasks) == expected


def test_decorate_worker_script(tmp_path, receiver):
    """examples/decorate_worker.py: three worker spans, their structlog lines carry the ids."""
    proc = _run([str(ROOT / "examples" / "decorate_worker.py")], tmp_path, receiver.env())
    spans = by_name(settle(receiver, 4))
    workers = {s.span_id: s for s in spans["resize_images"]}
    assert len(workers) == 3
    resized = [line for line in proc.stderr.splitlines() if '"resized"' in line]
    assert len(resized) == 6
    assert all(any(span_id in line for span_id in workers) for line in resized)
    assert "k-123" not in proc.stderr


def test_application_span_script(tmp_path, receiver):
    """examples/application_span.py: the workers are children of the application's span."""
    _run([str(ROOT / "examples" / "application_span.py")], tmp_path, receiver.env())
    spans = by_name(settle(receiver, 4))
    batch = spans["nightly-batch"][0]
    assert batch.attributes["batch.size"] == 3
    assert all(s.parent_span_id == batch.span_id for s in spans["crunch"])


def test_pool_example_traces_tasks_and_workers(tmp_path, receiver, method):
    """`pool`: tasks under the submitting spans, workers under the pool and executor spans."""
    proc = _run(["-m", "proctrace.examples.pool", "--method", method], tmp_path, receiver.env())
    assert "pool.map: [0, 40853, 33370, 43072]" in proc.stdout
    receiver.wait_for_spans(3 + 6 + 3)
    spans = by_name(receiver.spans)
    job = spans["checksum-job"][0]
    assert f"trace id: {job.trace_id}" in proc.stdout
    pool, executor = spans["pool"][0], spans["executor"][0]
    assert pool.parent_span_id == job.span_id and executor.parent_span_id == job.span_id
    parents = sorted(
        "pool" if s.parent_span_id == pool.span_id else "executor" for s in spans["checksum"]
    )
    assert parents == ["executor"] * 2 + ["pool"] * 4
    assert all(w.parent_span_id == pool.span_id for w in spans["multiprocessing.pool.worker"])


def test_nested_example_is_a_process_tree(tmp_path, receiver, method):
    """`nested`: two children, each with two grandchildren beneath it."""
    _run(["-m", "proctrace.examples.nested", "--method", method], tmp_path, receiver.env())
    spans = by_name(settle(receiver, 7))
    leads = {s.span_id: s for s in spans["lead"]}
    assert len(leads) == 2
    for leaf in spans["leaf"]:
        lead = leads[leaf.parent_span_id]
        assert leaf.attributes["proctrace.args"][0] == lead.attributes["proctrace.args"][0]
