"""The Dask hook's task side: a traced task's run on a worker, in its span.

``distributed.worker._run_task`` gives the task's function to a ``_Call`` for that run
(``_traced``): the span of ``_child/run.run_call`` (name, arguments, redaction as a pool
task's) with the task's key, the worker's address, the thread and the attempt, announced
at its start so that the collector ends it (ERROR) should the worker die mid-task. Its
span id is derived from the scheduler's ``run_id`` of the run, so a rerun links to the run
before it (``run_span_id()``).

A ``@traced`` function travels to the worker as a ``dask_portable.Portable``.
"""

from __future__ import annotations

import multiprocessing
import socket
import threading
from types import FunctionType
from typing import TYPE_CHECKING, Any

from .._child import run as _run
from .._child import span as _span
from .._child import wire as _wire
from .._child.follow import follow_program
from .._core import names
from .._core.ids import SpanRef, new_id, parse_traceparent
from .._core.spec import (
    PLAIN,
    TraceSpec,
    function_name,
    resolve,
    span_name,
    spec_of,
)

if TYPE_CHECKING:
    from .._child import announced as _announced_module

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
# The plans of the tasks run here (``_Call._plan``), and the parsed traceparents of the
# annotations they carried.
_plans: dict[tuple[Any, ...], tuple[_announced_module.Plan, str]] = {}
_marks: dict[str, SpanRef] = {}
_current_thread = threading.current_thread
# What only a Dask worker's tasks need, loaded with its first task (``_load()``): a program
# that never runs one does not hold these modules (each is pages a fork child shares).
_announced: Any = None  # proctrace._child.announced
Portable: Any = None  # dask_portable.Portable
dask_own: Any = None  # dask_portable.dask_own


def _load() -> None:
    global _announced, Portable, dask_own
    from .._child import announced
    from . import dask_portable

    _announced, Portable, dask_own = announced, dask_portable.Portable, dask_portable.dask_own


_host = ""


def set_standalone(settings: Any) -> None:
    global _standalone
    _standalone = settings


def standalone() -> Any:
    return _standalone


def _destination() -> tuple[dict[str, Any] | None, Any] | None:
    """(carrier, settings) for the spans of this worker process; None: not traced. Worked out
    once per process object (a task runs this first)."""
    global _where
    proc = multiprocessing.current_process()
    if _where is not None and _where[0] is proc and _where[1] is _standalone:
        return _where[2]
    carrier = _run.carrier_of(proc)
    where: tuple[dict[str, Any] | None, Any] | None = None
    if carrier is not None:
        where = None if _run.carrier_settings(carrier).disabled else (carrier, None)
    elif _standalone is not None:
        where = None, _standalone
    _where = (proc, _standalone, where)
    return where


_where: tuple[Any, Any, tuple[dict[str, Any] | None, Any] | None] | None = None


def traced(task: Any, state: Any, key: Any) -> Any:
    """``task`` with its function run in its span, when it carries the annotation."""
    worker = state.get("worker") if isinstance(state, dict) else None
    ts = getattr(getattr(worker, "state", None), "tasks", {}).get(key)
    annotations = getattr(ts, "annotations", None) or {}
    mark = annotations.get(ANNOTATION)
    if not isinstance(mark, str):
        return task
    ids = _marks.get(mark)
    if ids is None:
        ids = parse_traceparent(mark[1:])
        if ids is not None:
            if len(_marks) >= 256:
                _marks.clear()
            _marks[mark] = ids
    where = _destination()
    if ids is None or where is None:
        return task
    if _announced is None:
        _load()
    copy = task.copy()
    copy.func = _Call(
        task.func,
        ids,
        mark,
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

    __slots__ = (
        "attempt", "everything", "fn", "ids", "key", "mark", "retries", "runs", "where", "worker"
    )

    def __init__(
        self,
        fn: Any,
        ids: SpanRef,
        mark: str,  # the annotation: "*" (every task) or "@" (@traced), then the traceparent
        where: tuple[dict[str, Any] | None, Any],
        key: Any,
        worker: Any,
        retries: Any,
        attempt: Any,
        runs: tuple[Any, Any] = (None, None),  # the scheduler's run_id: this run's, the last's
    ) -> None:
        self.fn, self.ids, self.mark, self.where = fn, ids, mark, where
        self.everything = mark[0] == "*"
        self.key, self.worker, self.retries, self.attempt = key, worker, retries, attempt
        self.runs = runs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fn = self.fn
        if type(self.runs[1]) is not int:  # a first run (a rerun links to the one before)
            # The common cases, first: a @traced function, or any plain function when every
            # task is traced (not Dask's own around the work: named after the task's key).
            target: Any
            spec: TraceSpec | None
            if type(fn) is Portable:
                target, spec = fn.target, fn.spec
            elif (
                type(fn) is FunctionType and self.everything
                and not isinstance(getattr(fn, "__proctrace__", None), TraceSpec)
                and not dask_own(fn)
            ):
                target, spec = fn, PLAIN
            else:
                target = spec = None
            found = None if target is None or spec is None else self._plan(target, spec)
            if found is not None:
                plan, prefix = found
                key, attempt = self._attempt()
                run = self.runs[0]
                this = _run_span_id(prefix, key, run) if type(run) is int else new_id(8)
                return _announced.run(plan, target, args, kwargs, this, (key, attempt))
        return self._general(fn, args, kwargs)

    def _general(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
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
        run, previous = self.runs
        scheduler = _scheduler(self.worker)
        extra = self._attributes()
        if spec is PLAIN and dask_own(target):
            # Dask's own function around the work (a fused subgraph, a bag's map_chunk, an
            # array's blockwise call): the span is named as Dask names the task, after its key.
            spec = TraceSpec(name=task_name(self.key), record_args=False)
            if getattr(target, "__name__", "") == "_execute_subgraph" and args:
                extra[FUSED] = fused_names(args[0])
        span_id = links = None
        if type(run) is int:
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

    def _plan(self, target: Any, spec: TraceSpec) -> tuple[_announced_module.Plan, str] | None:
        """The spans of this function's tasks submitted from one span, in this thread, and
        the start of their span ids' text; None when they are not recorded here. A function
        sent by value arrives anew with each task: it is known by where it is defined."""
        thread = _current_thread()
        code = getattr(target, "__code__", None)
        if code is None:
            return None
        cache_key = (
            self.mark, code.co_filename, code.co_firstlineno, target.__qualname__, spec,
            thread.ident, thread.name, self.retries, id(self.worker),
        )
        try:
            found = _plans.get(cache_key)
        except TypeError:  # an annotation Dask would not have set: the general way
            return None
        if found is not None and found[0].holds():
            return found
        carrier, settings = self.where
        if carrier is not None:
            settings = _run.carrier_settings(carrier)
            if _wire.address() != carrier["socket"]:  # a spawn worker's untraced target
                _wire.set_address(carrier["socket"])
        if settings is None or settings.disabled or not self.ids.sampled:
            return None
        if carrier is not None:
            follow_program(settings, child=True)
        attrs = {
            **_run.process_attributes(multiprocessing.current_process(), carrier),
            names.FUNCTION: function_name(target),
            WORKER: str(getattr(self.worker, "address", "") or ""),
            THREAD_ID: thread.ident or 0,
            THREAD_NAME: thread.name,
            HOST: hostname(),
        }
        if isinstance(self.retries, int) and self.retries > 0:
            attrs[RETRIES] = self.retries
        plan = _announced.Plan(
            target, span_name(target, spec), self.ids, attrs, (KEY, ATTEMPT), spec.record_args,
            settings.max_repr, spec.redact + settings.redact,
        )
        if len(_plans) >= 256:
            _plans.clear()
        found = _plans[cache_key] = (plan, f"{self.ids.trace_id} {_scheduler(self.worker)} ")
        return found

    def _attempt(self) -> tuple[str, int]:
        """The task's key, and which run of it this is."""
        key = str(self.key)
        if len(_attempts) > 4096:
            _attempts.clear()
        attempt = _attempts[key] = _attempts.get(key, 0) + 1  # this worker's own count
        if isinstance(self.attempt, int) and self.attempt > attempt:
            attempt = self.attempt  # the scheduler's, which counts on every worker
        return key, attempt

    def _attributes(self) -> dict[str, Any]:
        key, attempt = self._attempt()
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
    return _run_span_id(f"{trace_id} {scheduler} ", key, run_id)


def _run_span_id(prefix: str, key: str, run_id: int) -> str:
    global _blake2b
    if _blake2b is None:
        import hashlib  # here: a program without Dask never loads it

        _blake2b = hashlib.blake2b
    digest: str = _blake2b(f"{prefix}{key} {run_id}".encode(), digest_size=8).hexdigest()
    return digest if digest != "0" * 16 else "0" * 15 + "1"


_blake2b: Any = None


def _scheduler(worker: Any) -> str:
    return str(getattr(getattr(worker, "scheduler", None), "address", ""))


def hostname() -> str:
    global _host
    if not _host:
        _host = socket.gethostname()
    return _host
