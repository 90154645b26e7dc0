"""What crosses the process boundary: a plain dict captured in the thread that calls ``start()``.

The carrier holds the W3C ``traceparent`` of the parent span, the collector's
socket path, the validated settings, the starter's pid and the start method.
It is plain data: pickled as part of the process object for spawn and
forkserver, inherited in memory under fork.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from multiprocessing import context as mp_context
from typing import Any

from . import _decorator, _patch, _span, _wire


def inherited() -> dict[str, Any] | None:
    """The carrier this process was started with, if it is a traced (or followed) child."""
    carrier = getattr(multiprocessing.current_process(), _patch.CARRIER_ATTR, None)
    return carrier if isinstance(carrier, dict) else None


def start_method_of(proc: Any) -> str:
    method = getattr(proc, "_start_method", None)
    if method:
        return str(method)
    # multiprocessing.Process uses the default context; asking fixes it, as start() would.
    return str(mp_context._default_context.get_start_method())


def fallback_parent() -> tuple[str, str] | None:
    """Where a process nests when no span is current: the parent this process was started
    under (in a child), or the run's main-process span (in the main program)."""
    here = inherited()
    if here is not None:
        return _span.parse_traceparent(here["traceparent"])
    from . import _runtime

    runtime = _runtime.ensure()
    return runtime.root_ids() if runtime is not None else None


def capture(proc: Any) -> dict[str, Any] | None:
    """The carrier for ``proc``, or None when it is not to be traced.

    A process is followed when its target is decorated, when it is a pool's
    worker, under ``instrument()``, or once the run is under way (so that the
    traced grandchildren of an undecorated child still link up).
    """
    from . import _instrument, _pool, _runtime

    here = inherited()
    target = getattr(proc, "_target", None)
    traced_target = _decorator.spec_of(target) is not None
    pool_parent = _pool.spawning_parent(proc)
    instrumenting = _instrument.enabled()
    if (
        here is None
        and not traced_target
        and pool_parent is None
        and not instrumenting
        and not _patch.decorated()
        and not _runtime.active()
    ):
        return None
    if here is not None:
        settings = here["settings"]
        socket_path = here["socket"]
    else:
        runtime = _runtime.ensure()
        if runtime is None:
            return None
        settings = runtime.settings_dict
        socket_path = runtime.socket_path
    parent = (
        (_span.parse_traceparent(pool_parent) if pool_parent else None)
        or _span.current_ids()
        or fallback_parent()
    )
    if settings.get("disabled") or parent is None:
        return None
    spec = _decorator.spec_of(target)
    if spec is None and target is not None and (pool_parent or instrumenting):
        from . import _follow

        if isinstance(target, _follow.ProcessTarget):
            spec = target.spec
        else:
            spec = _follow.PLAIN
            if pool_parent:  # a pool's worker loop: its arguments are queues
                spec = _decorator.TraceSpec(
                    name=_function_name(target), record_args=False, terminate_is_normal=True
                )
            proc._target = _follow.ProcessTarget(target, spec)
    carrier = {
        "traceparent": _span.traceparent(*parent),
        "socket": socket_path,
        "settings": settings,
        "starter_pid": os.getpid(),
        "start_method": start_method_of(proc),
        "instrument": instrumenting,
    }
    if spec is not None:  # the child will have a span: choose its id here
        carrier["span"] = _span.new_id(8)
        carrier["name"] = spec.name or str(getattr(target, "__qualname__", "process"))
        carrier["quiet_term"] = spec.terminate_is_normal
        carrier["start"] = time.time_ns()
        if carrier["start_method"] == "fork" and target is not None:
            from . import _child

            _child.prepare_fork(getattr(target, "__wrapped__", target), spec, carrier)
    return carrier


# With the application's own provider, join() waits this long at most for the child's
# span to reach it (the collector is a thread of this process then).
JOIN_WAIT = 0.5


def announce(proc: Any, carrier: dict[str, Any]) -> None:
    """Tell the collector a child with a span is under way (sent once ``start()`` worked).

    Should the child die before its target runs, the span still exists, and the
    collector can end it when the starter reports the exit."""
    if "span" not in carrier:
        return
    _wire.set_address(carrier["socket"])
    trace_id, parent_id = _span.parse_traceparent(carrier["traceparent"]) or ("", "")
    _wire.send(
        {
            "k": "expect",
            "trace": trace_id,
            "span": carrier["span"],
            "parent": parent_id,
            "name": carrier["name"],
            "start": carrier["start"],
            "quiet_term": carrier["quiet_term"],
            "attrs": {
                "process.pid": proc.pid,
                "proctrace.process.name": proc.name,
                "proctrace.start_method": carrier["start_method"],
                "proctrace.starter.pid": carrier["starter_pid"],
            },
        }
    )


def report(proc: Any, kind: str, value: int) -> None:
    """Tell the collector the starter signalled (``signal``) or reaped (``exited``) a child."""
    carrier = getattr(proc, _patch.CARRIER_ATTR, None)
    if not isinstance(carrier, dict) or "span" not in carrier:
        return
    if kind == "exited":
        if getattr(proc, "_proctrace_reaped", False):
            return
        proc._proctrace_reaped = True
    _wire.send({"k": kind, "span": carrier["span"], "value": value})
    if kind == "exited":
        from . import _runtime

        runtime = _runtime._runtime
        if runtime is not None and runtime.collector is not None and _runtime.active():
            runtime.collector.wait_delivered(carrier["span"], JOIN_WAIT)


def _function_name(target: Any) -> str:
    from ._child import function_name

    return function_name(target)
