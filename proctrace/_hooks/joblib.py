"""The joblib hook: a span per call of the user's function (not per batch) under the span
current where ``Parallel(...)(...)`` was called, and loky's workers traced like a pool's.

joblib groups calls into batches (``BatchedCalls``) and hands each batch to its backend. The
batches of one ``Parallel(...)(...)`` are dispatched from the calling thread first, then from
the backend's callback threads as results come back, where that span is not current. So the
span is captured where ``Parallel(...)(...)`` is called, and at dispatch each ``(func, args,
kwargs)`` item of a batch is wrapped in a ``Task`` carrying it: one span per call in the
worker, under that span. This is done for the process backends only (loky, joblib's default,
and multiprocessing); the multiprocessing backend's pool then leaves the batch as it is.

loky starts its workers through ``BaseProcess.start``, so they get a carrier like any child;
its executor is stamped with the span current at its creation, as ``ProcessPoolExecutor`` is,
which makes them pool workers: a span each, named after loky's worker loop, arguments not
recorded. When loky kills its own workers (on shutdown, joblib aborting a call after an
exception, or after one of them died), that is reported as the pool stopping its worker, not
as a failure; the one that died, with the exit code loky saw.

Nothing here imports joblib, and nothing loads this module before the program imports joblib
(``_hooks.install`` waits for it).
"""

from __future__ import annotations

import functools
import sys
from types import ModuleType
from typing import Any

from .._child import span as _span
from .._core.ids import traceparent
from .._core.spec import spec_of
from . import pools, registry
from .targets import Task

_PARALLEL = "joblib.parallel"
_LOKY = "joblib.externals.loky.process_executor"
# The attribute of a Parallel object holding the span current where it was called.
_CALLER_ATTR = "_proctrace_caller"
_active = False


def patch_imported(module: ModuleType) -> None:
    """Patch ``module`` (one of ``PATCHED``), which the program has just imported: the hooks
    are on (``_hooks.install`` loads this module only then)."""
    global _active
    _active = True
    _PATCHES[module.__name__](module)


def uninstall() -> None:
    """Put joblib's and loky's originals back."""
    global _active
    _active = False
    owners: list[Any] = []
    parallel = sys.modules.get(_PARALLEL)
    if parallel is not None:
        owners.append(getattr(parallel, "Parallel", None))
    loky = sys.modules.get(_LOKY)
    if loky is not None:
        owners += [getattr(loky, "ProcessPoolExecutor", None)]
        owners += [getattr(loky, "_ExecutorManagerThread", None)]
    registry.restore(tuple(owners))


def _patch(owner: type, name: str, make: Any) -> None:
    original = registry.original(owner, name)
    registry.patch(owner, name, functools.wraps(original)(make(original)))


def _caller_traceparent(parallel: Any) -> str | None:
    """Where the calls of ``parallel`` nest: the span current where it was called, else the
    run's main span (or the span this process was started under)."""
    ids = getattr(parallel, _CALLER_ATTR, None)
    if ids is None:
        return pools.here()
    return traceparent(*ids)


def _wrap_calls(parallel: Any, batch: Any) -> None:
    """Replace each function of ``batch`` by a ``Task`` carrying the caller's span."""
    items = batch.items
    everything = registry.instrumenting() or registry.decorated()
    wanted = [everything or spec_of(item[0]) is not None for item in items]
    if not any(wanted):
        return
    parent = _caller_traceparent(parallel)
    if parent is None or parent.endswith("-00"):  # unsampled: nothing to record
        return
    batch.items = [
        (Task(fn, parent) if want and not isinstance(fn, Task) else fn, args, kwargs)
        for (fn, args, kwargs), want in zip(items, wanted, strict=True)
    ]


def _patch_parallel(module: ModuleType) -> None:
    parallel = getattr(module, "Parallel", None)
    batched = getattr(module, "BatchedCalls", None)
    backends = sys.modules.get("joblib._parallel_backends")  # imported by joblib.parallel
    in_processes: tuple[Any, ...] = tuple(
        getattr(backends, name, None) for name in ("LokyBackend", "MultiprocessingBackend")
    )
    if (
        not _active
        or parallel is None
        or batched is None
        or None in in_processes
        or not hasattr(parallel, "_dispatch")
        or registry.patched(parallel, "_dispatch")
    ):
        return  # a joblib this hook does not know: leave it alone

    def call(original: Any) -> Any:
        def __call__(self: Any, iterable: Any) -> Any:
            setattr(self, _CALLER_ATTR, _span.current_ids())
            return original(self, iterable)

        return __call__

    def dispatch(original: Any) -> Any:
        def _dispatch(self: Any, batch: Any) -> Any:
            if not (isinstance(self._backend, in_processes) and isinstance(batch, batched)):
                return original(self, batch)  # threads: the calls share this process's context
            _wrap_calls(self, batch)
            with pools.submitting_as_is():
                return original(self, batch)

        return _dispatch

    _patch(parallel, "__call__", call)
    _patch(parallel, "_dispatch", dispatch)


def _patch_loky(module: ModuleType) -> None:
    executor = getattr(module, "ProcessPoolExecutor", None)
    manager = getattr(module, "_ExecutorManagerThread", None)
    if (
        not _active
        or executor is None
        or manager is None
        or not hasattr(executor, "_adjust_process_count")
        or registry.patched(executor, "_adjust_process_count")
    ):
        return  # a loky this hook does not know: leave it alone

    def init(original: Any) -> Any:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            self._proctrace_parent = pools.here()
            original(self, *args, **kwargs)

        return __init__

    def adjust(original: Any) -> Any:
        def _adjust_process_count(self: Any) -> None:
            with pools.spawning(getattr(self, "_proctrace_parent", None)):
                original(self)

        return _adjust_process_count

    def kill(original: Any) -> Any:
        def kill_workers(self: Any, reason: str = "") -> None:
            # loky SIGKILLs its workers itself (shutting down, or broken: one of them died)
            # and never joins them: the one that died is reported with its exit code (loky
            # reaped it already), each other one as stopped by its pool.
            from .._starter import carrier as _carrier

            for process in list(self.processes.values()):
                code = process.exitcode
                if code is not None:
                    _carrier.report(process, "exited", code)
                else:
                    _carrier.report(process, "signal", 9)
            original(self, reason)

        return kill_workers

    _patch(executor, "__init__", init)
    _patch(executor, "_adjust_process_count", adjust)
    if hasattr(manager, "kill_workers"):
        _patch(manager, "kill_workers", kill)


# The modules this hook patches, and how (``_hooks.install`` waits for these).
_PATCHES = {_PARALLEL: _patch_parallel, _LOKY: _patch_loky}
PATCHED = tuple(_PATCHES)
