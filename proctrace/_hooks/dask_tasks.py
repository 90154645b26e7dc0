"""The Dask hook's task side: a traced task's run on a worker, in its span.

``distributed.worker._run_task`` gives the task's function to a ``_Call`` for that run
(``_traced``): the span of ``_child/run.run_call`` (name, arguments, redaction as a pool
task's) with the task's key, the worker's address, the thread and the attempt, announced
at its start so that the collector ends it (ERROR) should the worker die mid-task. Its
span id is derived from the scheduler's ``run_id`` of the run, so a rerun links to the run
before it (``run_span_id()``).

A ``@traced`` function travels to the worker as a ``Portable``: the function it wraps and
its options, which pickle as the plain function would (Dask pickles the function of every
task it sends; the wrapper, defined in ``__main__`` by value, cost three times as much).
"""

from __future__ import annotations

import multiprocessing
import socket
import threading
from types import FunctionType
from typing import Any

from .._child import run as _run
from .._child import span as _span
from .._core.ids import SpanRef, parse_traceparent
from .._core.spec import PLAIN, TraceSpec, resolve, spec_of
from . import registry
from .targets import StandIn

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
FUSED = "proctrace.dask.fused"  # the tasks a fused task runs (Dask fuses chains of them)

# A worker started elsewhere: its run's settings (``dask.setup_worker()``).
_standalone: Any = None
# Runs of each task key in this process: a retry on the same worker is attempt 2.
_attempts: dict[str, int] = {}
_host = ""


def set_standalone(settings: Any) -> None:
    global _standalone
    _standalone = settings


def standalone() -> Any:
    return _standalone


_CO_COROUTINE = 0x80


class Portable(StandIn):
    """A ``@traced`` function as Dask sends it to a worker: called, it is the wrapper's call
    (``registry.traced_call()``); pickled, it is the function it wraps and its ``TraceSpec``."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return registry.traced_call()(self.target, self.spec, args, kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Portable, (self.target, self.spec))


def portable(fn: Any) -> Portable | None:
    """``fn`` as a ``Portable`` when it is a ``@traced`` wrapper of a plain function (a
    coroutine function's wrapper stays: Dask awaits what is one)."""
    spec = getattr(fn, "__proctrace__", None)
    target = getattr(fn, "__wrapped__", None)
    if type(fn) is not FunctionType or not isinstance(spec, TraceSpec):
        return None
    if type(target) is not FunctionType or fn.__code__.co_flags & _CO_COROUTINE:
        return None
    return Portable(target, spec)


def _destination() -> tuple[dict[str, Any] | None, Any] | None:
    """(carrier, settings) for the spans of this worker process; None: not traced."""
    carrier = _run.carrier_of(multiprocessing.current_process())
    if carrier is not None:
        return None if _run.carrier_settings(carrier).disabled else (carrier, None)
    if _standalone is not None:
        return None, _standalone
    return None


def traced(task: Any, state: Any, key: Any) -> Any:
    """``task`` with its function run in its span, when it carries the annotation."""
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
        if type(target) is Portable:  # a @traced function as the scheduler sent it
            target = target.target
        elif type(target) is not FunctionType:  # a partial, a method, an instance: see through
            target, args, kwargs = resolve(target, args, kwargs)
        if isinstance(getattr(target, "__proctrace__", None), TraceSpec):
            target = getattr(target, "__wrapped__", target)  # the @traced wrapper's function
        carrier, settings = self.where
        extra = self._attributes()
        if spec is PLAIN and _is_dask_own(target):
            # Dask's own function around the work (a fused subgraph, a bag's map_chunk, an
            # array's blockwise call): the span is named as Dask names the task, after its key.
            spec = TraceSpec(name=task_name(self.key), record_args=False)
            if getattr(target, "__name__", "") == "_execute_subgraph" and args:
                extra[FUSED] = fused_names(args[0])
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
            HOST: hostname(),
            ATTEMPT: attempt,
        }
        if isinstance(self.retries, int) and self.retries > 0:
            attributes[RETRIES] = self.retries
        return attributes


def _is_dask_own(fn: Any) -> bool:
    module = str(getattr(fn, "__module__", None) or "")
    return module.split(".")[0] in ("dask", "distributed")


def task_name(key: Any) -> str:
    """A task's name as Dask shows it: its key without the token (``inc-3f2a...`` is
    ``inc``; a bag's or an array's chunk, ``('inc-3f2a...', 0)``, too)."""
    from dask.utils import key_split  # on a worker: Dask is loaded

    return str(key_split(key))


def fused_names(inner: Any) -> list[str]:
    """The names of the tasks a fused subgraph runs, in its order, each once."""
    if not isinstance(inner, dict):
        return []
    return list(dict.fromkeys(task_name(key) for key in inner))


def run_span_id(trace_id: str, scheduler: str, key: str, run_id: int) -> str:
    """One run's span id, the same on every worker: the next run's span links to it."""
    text = f"{trace_id} {scheduler} {key} {run_id}".encode()
    import hashlib  # here: a program without Dask never loads it

    return hashlib.blake2b(text, digest_size=8).hexdigest().replace("0" * 16, "0" * 15 + "1")


def hostname() -> str:
    global _host
    if not _host:
        _host = socket.gethostname()
    return _host
