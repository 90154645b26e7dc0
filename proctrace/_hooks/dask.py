"""The Dask hook: a span per task execution on a Dask worker, under the span current where the
work was submitted (``Client.submit``/``map``, ``compute``/``dask.compute``/``persist``, the
``concurrent.futures`` executor of ``client.get_executor()``).

Every one of these goes through ``Client._graph_to_futures``, called in the submitting
thread: there the traceparent of the current span is added to the graph's Dask annotations
(``proctrace``), which the scheduler hands to the worker with each task, retries included.
Keys, tokens and graphs stay as they are (no wrapper to pickle). On the worker,
``distributed.worker._run_task`` gives the task's function to a ``_Call`` for that run: the
span of ``_child/run.run_call`` (name, arguments, redaction as a pool task's) with the task's
key, the worker's address, the thread and the attempt, announced at its start so that the
collector ends it (ERROR) should the worker die mid-task. Its span id is derived from the
scheduler's ``run_id`` of the run, so a rerun links to the run before it (``run_span_id()``).

Where the spans go: a worker process started through multiprocessing by a traced program
(``LocalCluster(processes=True)``) has a carrier, as any child; its process span is named
``dask worker``. A worker started elsewhere loads ``proctrace.dask`` (``--preload`` or the
``WorkerPlugin``): ``setup_worker()`` starts that process's own run (its agent exports to the
``OTEL_EXPORTER_OTLP_*`` endpoint set there) and opens the worker's process span.

Nothing here imports Dask: the hook is installed when the program imports it.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import socket
import sys
import threading
from types import FunctionType, ModuleType
from typing import Any

from .._child import run as _run
from .._child import span as _span
from .._core import names, onimport
from .._core.ids import SpanRef, new_id, parse_traceparent
from .._core.spec import PLAIN, TraceSpec, resolve, spec_of
from . import pools, registry
from .targets import ProcessTarget

ANNOTATION = "proctrace"  # the Dask annotation: "*" (every task) or "@" (@traced), traceparent
KEY = "proctrace.dask.key"
WORKER = "proctrace.dask.worker"
ATTEMPT = "proctrace.dask.attempt"  # 1, then 2, ... for each run Dask makes of the task
# Set by the scheduler (where proctrace is loaded) on a task's second run and later ones.
ATTEMPT_ANNOTATION = "proctrace.attempt"
# ... with the scheduler's ``run_id`` of the run before: the span this run's links to.
PREVIOUS_ANNOTATION = "proctrace.previous_run"
RETRIES = "proctrace.dask.retries"  # the retries allowed (submit(..., retries=n))
THREAD_ID = "thread.id"
THREAD_NAME = "thread.name"
HOST = "host.name"
WORKER_SPAN = "dask worker"
# A worker process's span, as a pool worker's: its arguments are pipes; SIGTERM is a normal end.
WORKER_SPEC = TraceSpec(name=WORKER_SPAN, record_args=False, terminate_is_normal=True)

_CLIENT, _WORKER, _PROCESS = "distributed.client", "distributed.worker", "distributed.process"
_SCHEDULER = "distributed.scheduler"
_active = False
# A worker started elsewhere: its run's settings, and its process span (setup_worker()).
_standalone: Any = None
_worker_span: _span.Span | None = None
# Runs of each task key in this process: a retry on the same worker is attempt 2.
_attempts: dict[str, int] = {}
_host = ""


def install() -> None:
    """Patch distributed once the program imports it; idempotent."""
    global _active
    if _active:
        return
    _active = True
    onimport.when_imported(_CLIENT, _patch_client)
    onimport.when_imported(_WORKER, _patch_worker)
    onimport.when_imported(_PROCESS, _patch_process)
    onimport.when_imported(_SCHEDULER, _patch_scheduler)


def uninstall() -> None:
    """Put distributed's originals back."""
    global _active
    _active = False
    owners = [
        getattr(sys.modules.get(_CLIENT), "Client", None),
        sys.modules.get(_WORKER),
        getattr(sys.modules.get(_PROCESS), "AsyncProcess", None),
        getattr(sys.modules.get(_SCHEDULER), "Scheduler", None),
    ]
    registry.restore(tuple(o for o in owners if o is not None))


def _patch(owner: Any, name: str, make: Any) -> None:
    original = registry.original(owner, name)
    registry.patch(owner, name, functools.wraps(original)(make(original)))


def _mark() -> str | None:
    """The annotation for work submitted here, or None when there is nothing to trace."""
    everything = registry.instrumenting()
    if not (everything or registry.decorated()):
        return None
    parent = pools.here()
    if parent is None or parent.endswith("-00"):  # unsampled: nothing to record
        return None
    return ("*" if everything else "@") + parent


def _patch_client(module: ModuleType) -> None:
    client = getattr(module, "Client", None)
    dask = sys.modules.get("dask")
    if (
        not _active
        or client is None
        or dask is None
        or not hasattr(client, "_graph_to_futures")
        or registry.patched(client, "_graph_to_futures")
    ):
        return  # a distributed this hook does not know: leave it alone

    def graph_to_futures(original: Any) -> Any:
        def _graph_to_futures(self: Any, *args: Any, **kwargs: Any) -> Any:
            mark = _mark()
            if mark is None:
                return original(self, *args, **kwargs)
            with dask.annotate(**{ANNOTATION: mark}):
                return original(self, *args, **kwargs)

        return _graph_to_futures

    _patch(client, "_graph_to_futures", graph_to_futures)


def _patch_worker(module: ModuleType) -> None:
    spec_module = sys.modules.get("dask._task_spec")
    task_type = getattr(spec_module, "Task", None)
    if (
        not _active
        or task_type is None
        or not callable(getattr(module, "_run_task", None))
        or registry.patched(module, "_run_task")
    ):
        return

    def run_task(original: Any) -> Any:
        def _run_task(task: Any, data: Any, state: Any, key: Any, *rest: Any) -> Any:
            if type(task) is task_type:
                task = _traced(task, state, key)
            return original(task, data, state, key, *rest)

        return _run_task

    _patch(module, "_run_task", run_task)


class WorkerTarget(ProcessTarget):
    """A Dask worker process's target (``AsyncProcess._run``) started by a traced program: the
    Dask hook is installed in the child before it runs (also with ``@traced`` alone)."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        install()
        return ProcessTarget.__call__(self, *args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (WorkerTarget, (self.target, self.spec))


def _patch_process(module: ModuleType) -> None:
    process = getattr(module, "AsyncProcess", None)
    if not _active or process is None or registry.patched(process, "__init__"):
        return

    def init(original: Any) -> Any:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            proc = getattr(self, "_process", None)
            target = getattr(proc, "_target", None)
            if (
                proc is not None
                and target is not None
                and (registry.instrumenting() or registry.decorated())
                and spec_of(target) is None
            ):
                proc._target = WorkerTarget(target, WORKER_SPEC)

        return __init__

    _patch(process, "__init__", init)


def _patch_scheduler(module: ModuleType) -> None:
    """The scheduler counts each task's runs (its retries after an error, and the workers that
    died running it): a second run and later ones carry their number to the worker."""
    scheduler = getattr(module, "Scheduler", None)
    if (
        not _active
        or scheduler is None
        or not hasattr(scheduler, "_task_to_msg")
        or registry.patched(scheduler, "_task_to_msg")
    ):
        return

    def task_to_msg(original: Any) -> Any:
        def _task_to_msg(self: Any, ts: Any) -> Any:
            previous = getattr(ts, "run_id", None)  # the run before this one, if any
            msg = original(self, ts)
            annotations = msg.get("annotations")
            if annotations and ANNOTATION in annotations:
                allowed = annotations.get("retries")
                retried = allowed - ts.retries if isinstance(allowed, int) else 0
                attempt = 1 + int(getattr(ts, "suspicious", 0)) + max(retried, 0)
                if attempt > 1:
                    extra: dict[str, Any] = {ATTEMPT_ANNOTATION: attempt}
                    if isinstance(previous, int):
                        extra[PREVIOUS_ANNOTATION] = previous
                    msg["annotations"] = {**annotations, **extra}
            return msg

        return _task_to_msg

    _patch(scheduler, "_task_to_msg", task_to_msg)


def _destination() -> tuple[dict[str, Any] | None, Any] | None:
    """(carrier, settings) for the spans of this worker process; None: not traced."""
    carrier = _run.carrier_of(multiprocessing.current_process())
    if carrier is not None:
        return None if _run.carrier_settings(carrier).disabled else (carrier, None)
    if _standalone is not None:
        return None, _standalone
    return None


def _traced(task: Any, state: Any, key: Any) -> Any:
    worker = state.get("worker") if isinstance(state, dict) else None
    ts = getattr(getattr(worker, "state", None), "tasks", {}).get(key)
    annotations = getattr(ts, "annotations", None) or {}
    mark = annotations.get(ANNOTATION)
    if not isinstance(mark, str):
        return task
    ids = parse_traceparent(mark[1:])
    where = _destination()
    if ids is None or where is None:
        return task
    copy = task.copy()
    copy.func = _Call(
        task.func,
        ids,
        mark[0] == "*",
        where,
        key,
        worker,
        annotations.get("retries"),
        annotations.get(ATTEMPT_ANNOTATION),
        (getattr(ts, "run_id", None), annotations.get(PREVIOUS_ANNOTATION)),
    )
    return copy


class _Call:
    """The function of one task run on this worker, in its span."""

    __slots__ = ("attempt", "everything", "fn", "ids", "key", "retries", "runs", "where", "worker")

    def __init__(
        self,
        fn: Any,
        ids: SpanRef,
        everything: bool,
        where: tuple[dict[str, Any] | None, Any],
        key: Any,
        worker: Any,
        retries: Any,
        attempt: Any,
        runs: tuple[Any, Any] = (None, None),  # the scheduler's run_id: this run's, the last's
    ) -> None:
        self.fn, self.ids, self.everything, self.where = fn, ids, everything, where
        self.key, self.worker, self.retries, self.attempt = key, worker, retries, attempt
        self.runs = runs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fn = self.fn
        spec = spec_of(fn)
        if spec is None and self.everything:
            spec = PLAIN
        if spec is None:  # not traced: only carry the context to whatever it does
            with _span.activate(_span.Parent(*self.ids)):
                return fn(*args, **kwargs)
        target = fn
        if type(target) is not FunctionType:  # a partial, a method, an instance: see through
            target, args, kwargs = resolve(target, args, kwargs)
        if isinstance(getattr(target, "__proctrace__", None), TraceSpec):
            target = getattr(target, "__wrapped__", target)  # the @traced wrapper's function
        carrier, settings = self.where
        extra = self._attributes()
        span_id = links = None
        run, previous = self.runs
        if type(run) is int:
            scheduler = str(getattr(getattr(self.worker, "scheduler", None), "address", ""))
            span_id = run_span_id(self.ids.trace_id, scheduler, extra[KEY], run)
            if type(previous) is int:  # the scheduler's run before this one
                earlier = run_span_id(self.ids.trace_id, scheduler, extra[KEY], previous)
                links = [(self.ids.trace_id, earlier, {ATTEMPT: extra[ATTEMPT] - 1})]
        return _run.run_call(
            target,
            spec,
            carrier,
            args,
            kwargs,
            parent=self.ids,
            settings=settings,
            announce=True,
            extra=extra,
            span_id=span_id,
            links=links,
        )

    def _attributes(self) -> dict[str, Any]:
        key = str(self.key)
        if len(_attempts) > 4096:
            _attempts.clear()
        attempt = _attempts[key] = _attempts.get(key, 0) + 1  # this worker's own count
        if isinstance(self.attempt, int) and self.attempt > attempt:
            attempt = self.attempt  # the scheduler's, which counts on every worker
        thread = threading.current_thread()
        attributes: dict[str, Any] = {
            KEY: key,
            WORKER: str(getattr(self.worker, "address", "") or ""),
            THREAD_ID: thread.ident or 0,
            THREAD_NAME: thread.name,
            HOST: _hostname(),
            ATTEMPT: attempt,
        }
        if isinstance(self.retries, int) and self.retries > 0:
            attributes[RETRIES] = self.retries
        return attributes


def run_span_id(trace_id: str, scheduler: str, key: str, run_id: int) -> str:
    """One run's span id, the same on every worker: the next run's span links to it."""
    text = f"{trace_id} {scheduler} {key} {run_id}".encode()
    import hashlib  # here: a program without Dask never loads it

    return hashlib.blake2b(text, digest_size=8).hexdigest().replace("0" * 16, "0" * 15 + "1")


def _hostname() -> str:
    global _host
    if not _host:
        _host = socket.gethostname()
    return _host


def setup_worker(worker: Any) -> None:
    """Trace this worker's tasks (``--preload proctrace.dask``, ``WorkerPlugin``); idempotent.

    A worker that is itself a traced program's child (a ``LocalCluster`` under ``proctrace
    run``) already sends to that program's run. Any other worker process starts its own
    run, exporting where its ``OTEL_*`` settings say, and a process span of its own."""
    global _standalone, _worker_span
    install()
    scheduler = getattr(sys.modules.get(_SCHEDULER), "Scheduler", None)
    if scheduler is not None and isinstance(worker, scheduler):
        return  # ``dask scheduler --preload proctrace.dask``: it counts each task's runs
    if _run.carrier_of(multiprocessing.current_process()) is not None or _standalone is not None:
        return
    from .._starter import main_span
    from .._starter import run as _starter

    runtime = _starter.ensure()
    if runtime is None:
        return
    _standalone = runtime.settings
    parent, _ = main_span.handed_in()  # TRACEPARENT: the trace the worker joins, if any
    attributes = {
        names.PID: os.getpid(),
        names.PARENT_PID: os.getppid(),
        names.PROCESS_NAME: multiprocessing.current_process().name,
        HOST: _hostname(),
        WORKER: str(getattr(worker, "address", "") or ""),
    }
    _worker_span = _span.Span(
        WORKER_SPAN,
        parent.trace_id if parent is not None else new_id(16),
        parent.span_id if parent is not None else None,
        attributes,
        sampled=parent.sampled if parent is not None else True,
    )


def teardown_worker(worker: Any) -> None:
    """The worker is closing: end its process span."""
    global _worker_span
    span, _worker_span = _worker_span, None
    if span is not None:
        span.end(_span.STATUS_UNSET)
