"""The Dask hook: a span per task execution on a Dask worker, under the span current where the
work was submitted (``Client.submit``/``map``, ``compute``/``dask.compute``/``persist``, the
``concurrent.futures`` executor of ``client.get_executor()``).

Every one of these goes through ``Client._graph_to_futures``, called in the submitting
thread: there the traceparent of the current span is added to the graph's Dask annotations
(``proctrace``), which the scheduler hands to the worker with each task, retries included.
Keys, tokens and graphs stay as they are. Where the scheduler sends a task to a worker
(``_task_to_msg``), a ``@traced`` function goes as a ``dask_tasks.Portable``; on the worker,
``distributed.worker._run_task`` runs it in its span (``dask_tasks``).

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
import sys
from types import ModuleType
from typing import Any

from .._child import run as _run
from .._child import span as _span
from .._core import names, onimport
from .._core.ids import new_id
from .._core.spec import TraceSpec, spec_of
from . import dask_tasks as _tasks
from . import pools, registry
from .dask_tasks import (
    ANNOTATION,
    ATTEMPT,
    ATTEMPT_ANNOTATION,
    HOST,
    KEY,
    PREVIOUS_ANNOTATION,
    RETRIES,
    WORKER,
)
from .targets import ProcessTarget

__all__ = ["ATTEMPT", "HOST", "KEY", "RETRIES", "WORKER", "install", "setup_worker"]

WORKER_SPAN = "dask worker"
# A worker process's span, as a pool worker's: its arguments are pipes; SIGTERM is a normal end.
WORKER_SPEC = TraceSpec(name=WORKER_SPAN, record_args=False, terminate_is_normal=True)

_CLIENT, _WORKER, _PROCESS = "distributed.client", "distributed.worker", "distributed.process"
_SCHEDULER = "distributed.scheduler"
_active = False
# A worker started elsewhere: its process span (setup_worker()).
_worker_span: _span.Span | None = None


def install() -> None:
    """Patch distributed once the program imports it; idempotent."""
    global _active
    if _active:
        return
    _active = True
    for name in PATCHED:
        onimport.when_imported(name, patch_imported)


def patch_imported(module: ModuleType) -> None:
    """Patch ``module`` (one of ``PATCHED``), which the program has just imported: the hooks
    are on (``_hooks.install`` loads this module only then)."""
    global _active
    _active = True
    _PATCHES[module.__name__](module)


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
                task = _tasks.traced(task, state, key)
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

    from .dask_portable import portable  # a program that runs no scheduler never loads it

    def task_to_msg(original: Any) -> Any:
        def _task_to_msg(self: Any, ts: Any) -> Any:
            previous = getattr(ts, "run_id", None)  # the run before this one, if any
            msg = original(self, ts)
            annotations = msg.get("annotations")
            if annotations and ANNOTATION in annotations:
                sent = msg.get("run_spec")
                task: Any = getattr(sent, "data", None)
                light = portable(
                    getattr(task, "func", None),
                    getattr(ts, "group", None),
                    # Every task traced, by a scheduler in the instrumented program itself
                    # (a LocalCluster's, whose workers are its children): a plain function
                    # goes as a Portable too, which a worker unpickles only with proctrace.
                    str(annotations[ANNOTATION]).startswith("*") and registry.instrumenting(),
                )
                if light is not None and hasattr(task, "copy"):
                    task = task.copy()
                    task.func = light
                    msg["run_spec"] = type(sent)(task)
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


def setup_worker(worker: Any) -> None:
    """Trace this worker's tasks (``--preload proctrace.dask``, ``WorkerPlugin``); idempotent.

    A worker that is itself a traced program's child (a ``LocalCluster`` under ``proctrace
    run``) already sends to that program's run. Any other worker process starts its own
    run, exporting where its ``OTEL_*`` settings say, and a process span of its own."""
    global _worker_span
    install()
    scheduler = getattr(sys.modules.get(_SCHEDULER), "Scheduler", None)
    if scheduler is not None and isinstance(worker, scheduler):
        return  # ``dask scheduler --preload proctrace.dask``: it counts each task's runs
    if (
        _run.carrier_of(multiprocessing.current_process()) is not None
        or _tasks.standalone() is not None
    ):
        return
    from .._starter import main_span
    from .._starter import run as _starter

    runtime = _starter.ensure()
    if runtime is None:
        return
    _tasks.set_standalone(runtime.settings)
    parent, _ = main_span.handed_in()  # TRACEPARENT: the trace the worker joins, if any
    attributes = {
        names.PID: os.getpid(),
        names.PARENT_PID: os.getppid(),
        names.PROCESS_NAME: multiprocessing.current_process().name,
        HOST: _tasks.hostname(),
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


# The modules of distributed this hook patches, and how (``_hooks.install`` waits for these).
_PATCHES = {
    _CLIENT: _patch_client,
    _WORKER: _patch_worker,
    _PROCESS: _patch_process,
    _SCHEDULER: _patch_scheduler,
}
PATCHED = tuple(_PATCHES)
