"""What crosses the process boundary: a plain dict captured in the thread that calls ``start()``.

The carrier holds the W3C ``traceparent`` of the parent span, the collector's
socket path, the validated settings, the starter's pid and the start method.
It is plain data: pickled as part of the process object for spawn and
forkserver, inherited in memory under fork. The starter also announces each
child's span to the collector and reports how it ended (signal, exit code).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import types
from multiprocessing import context as mp_context
from multiprocessing import process
from typing import TYPE_CHECKING, Any

from .._child import forkplan as _forkplan
from .._child import forkstart as _forkstart
from .._child import run as _child_run
from .._child import span as _span
from .._child import wire as _wire
from .._core import ids as _ids
from .._core import names
from .._core.ids import SpanRef, new_id, parse_traceparent, traceparent
from .._core.spec import TraceSpec, function_name, function_of, resolve, span_name, spec_of
from . import run as _run

if TYPE_CHECKING:
    from .._core.records import ExpectRecord

# With the application's own provider, join() waits this long at most for the child's
# span to reach it (the collector is a thread of this process then).
JOIN_WAIT = 0.5


def inherited() -> dict[str, Any] | None:
    """The carrier this process was started with, if it is a traced (or followed) child."""
    return _child_run.carrier_of(multiprocessing.current_process())


def start_method_of(proc: Any) -> str:
    method = getattr(proc, "_start_method", None)
    if method:
        return str(method)
    # multiprocessing.Process uses the default context; asking fixes it, as start() would.
    return str(mp_context._default_context.get_start_method())


def fallback_parent() -> SpanRef | None:
    """Where a process nests when no span is current (a thread of the program's own, say):
    this child's process span while it is open, else the parent it was started under (in a
    child), or the run's main-process span (in the main program)."""
    here = inherited()
    if here is not None:
        started_under = parse_traceparent(here["traceparent"])
        own = here.get("span")
        if (
            started_under is not None
            and isinstance(own, str)
            and getattr(multiprocessing.current_process(), names.ENTERED_ATTR, False)
        ):
            return SpanRef(started_under.trace_id, own, started_under.sampled)
        return started_under
    runtime = _run.ensure()
    return runtime.root_ids() if runtime is not None else None


def overridden_run(proc: Any) -> Any:
    """``type(proc).run`` when the class overrides ``BaseProcess.run``, else None."""
    run = getattr(type(proc), "run", None)
    return None if run is None or run is process.BaseProcess.run else run


class _Route:
    """What every fork child of one ``@traced`` function started under one span here shares:
    its carrier but for the span's id and start, and the plan its start is prepared from."""

    __slots__ = ("carrier", "pid", "plan", "runtime")

    def __init__(self, carrier: dict[str, Any], plan: _forkplan.Plan, runtime: object) -> None:
        self.carrier = carrier
        self.plan = plan
        self.runtime = runtime
        # A fork child inherits the routes: they are its starter's, whose fallback parent
        # (``fallback_parent``) is not the child's.
        self.pid = _ids.pid()


# Routes by (target, what is current here, instrumenting): a program that starts many
# children of one function from one place finds its way at once (see ``_routed``).
_routes: dict[tuple[Any, Any, bool], _Route] = {}
_pid = _ids._pid  # what ids.pid() reads, read here without the call
_MAX_ROUTES = 64


def _routed(proc: Any, instrumenting: bool) -> dict[str, Any] | None:
    """The carrier of a fork child started like one before it (same function, same span
    current here, same run), its start prepared; None when there is no such route.

    Every object the starter touches per child costs a page fault in the next fork, so
    this path is short: one lookup, a copy of the carrier, the child's own values."""
    target = proc.__dict__.get("_target")
    if type(target) is not types.FunctionType:
        return None
    route = _routes.get((target, _span.current_key(), instrumenting))
    if (
        route is None
        or route.pid != _pid[0]
        or route.runtime is not _run.runtime_here()
        or start_method_of(proc) != "fork"
    ):
        return None
    carrier = route.carrier.copy()
    carrier["span"] = new_id(8)
    carrier["start"] = time.time_ns()
    _forkstart.prepare(route.plan, proc, proc._args, proc._kwargs, carrier)
    return carrier


def capture(
    proc: Any, *, instrumenting: bool, pool_parent: str | None, decorated: bool
) -> tuple[dict[str, Any] | None, TraceSpec | None]:
    """The carrier for ``proc`` (None when it is not to be traced), and the spec its
    undecorated target is to be traced with (None: leave the target as it is).

    A process is followed when its target is decorated, when it is a pool's
    worker, under ``instrument()``, or once the run is under way (so that the
    traced grandchildren of an undecorated child still link up).
    """
    if pool_parent is None:
        routed = _routed(proc, instrumenting)
        if routed is not None:
            return routed, None
    here = inherited()
    target = getattr(proc, "_target", None)
    if target is None:  # a Process subclass's own run() is what the child runs
        target = overridden_run(proc)
    spec = spec_of(target)
    if (
        here is None
        and spec is None
        and pool_parent is None
        and not instrumenting
        and not decorated
        and not _run.active()
    ):
        return None, None
    if here is not None:
        settings = here["settings"]
        socket_path = here["socket"]
    else:
        runtime = _run.ensure()
        if runtime is None:
            return None, None
        settings = runtime.settings_dict
        socket_path = runtime.socket_path
    key = _span.current_key()
    parent = (
        (parse_traceparent(pool_parent) if pool_parent else None)
        or _span.current_ids()
        or fallback_parent()
    )
    if settings.get("disabled") or parent is None:
        return None, None
    wrap = None
    if spec is None and target is not None and (pool_parent or instrumenting):
        spec = wrap = TraceSpec()
        if pool_parent:  # a pool's worker loop: its arguments are queues
            spec = wrap = TraceSpec(
                name=function_name(target), record_args=False, terminate_is_normal=True
            )
    carrier: dict[str, Any] = {
        "traceparent": traceparent(*parent),
        "socket": socket_path,
        "settings": settings,
        "starter_pid": os.getpid(),
        "start_method": start_method_of(proc),
        "instrument": instrumenting,
        "sampled": parent.sampled,
    }
    if spec is not None:  # the child will have a span: choose its id here
        template = carrier.copy()
        carrier["span"] = new_id(8)
        carrier["name"] = span_name(resolve(target)[0], spec) if target else spec.name or "?"
        carrier["quiet_term"] = spec.terminate_is_normal
        carrier["start"] = time.time_ns()
        if carrier["start_method"] == "fork" and target is not None:
            plan = _child_run.prepare_fork(proc, *_call_of(proc, target), spec, carrier)
            if (
                plan is not None
                and wrap is None
                and pool_parent is None
                and type(target) is types.FunctionType
                and getattr(proc, "_target", None) is target
            ):
                template["name"] = carrier["name"]
                template["quiet_term"] = carrier["quiet_term"]
                if len(_routes) >= _MAX_ROUTES:
                    _routes.clear()
                _routes[(target, key, instrumenting)] = _Route(
                    template, plan, _run.runtime_here()
                )
    return carrier, wrap


def _call_of(proc: Any, target: Any) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """The function a fork child's span is about and the arguments it is called with, as
    the child's traced call will see them."""
    if getattr(proc, "_target", None) is None:  # the class's own run(proc)
        return target, (proc,), {}
    reached, args, kwargs = resolve(target, proc._args, proc._kwargs)
    return function_of(reached), args, kwargs


def announce(proc: Any, carrier: dict[str, Any], failed: str | None = None) -> None:
    """Tell the collector a child with a span is under way (sent once ``start()`` worked).

    Should the child die before its target runs, the span still exists, and the
    collector can end it when the starter reports the exit. A fork child whose start
    the starter prepared has its span opened already, on its own connection (see
    ``forkstart``): the starter only lets go of that connection. ``failed``: what
    ``start()`` raised."""
    if _forkstart.KEY in carrier:  # the child's start was prepared, its span opened
        if failed:
            _forkstart.started(carrier, failed)
        return
    if failed or "span" not in carrier or not carrier.get("sampled", True):
        return
    _wire.set_address(carrier["socket"])
    parent = parse_traceparent(carrier["traceparent"])
    trace_id, parent_id = (parent.trace_id, parent.span_id) if parent else ("", "")
    record: ExpectRecord = {
        "k": "expect",
        "trace": trace_id,
        "span": carrier["span"],
        "parent": parent_id,
        "name": carrier["name"],
        "start": carrier["start"],
        "quiet_term": carrier["quiet_term"],
        "attrs": {
            names.PID: proc.pid,
            names.PROCESS_NAME: proc.name,
            names.START_METHOD: carrier["start_method"],
            names.STARTER_PID: carrier["starter_pid"],
        },
    }
    ppid = _parent_pid(carrier["start_method"])
    if ppid:  # for a child that dies before it says so itself
        record["attrs"][names.PARENT_PID] = ppid
    _wire.send(record)


def _parent_pid(method: str) -> int | None:
    """The pid a child started here by ``method`` gets as its parent: this process's under
    spawn, the fork server's under forkserver (as far as this process knows it)."""
    if method == "spawn":
        return os.getpid()
    if method == "forkserver":
        forkserver = sys.modules.get("multiprocessing.forkserver")
        pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
        return pid if isinstance(pid, int) else None
    return None


def report(proc: Any, kind: str, value: int) -> None:
    """Tell the collector the starter signalled (``signal``) or reaped (``exited``) a child."""
    carrier = _child_run.carrier_of(proc)
    if carrier is None:
        return
    if kind == "exited":
        reaped(proc, carrier, value)
    elif "span" in carrier and carrier.get("sampled", True):
        _wire.send_report("signal", carrier["span"], value, proc.pid)


def reaped(proc: Any, carrier: dict[str, Any], code: int) -> None:
    """Tell the collector the exit code ``join()`` saw (once per child). Short: the starter
    runs it for every child it joins."""
    if REAPED in carrier or "span" not in carrier or not carrier.get("sampled", True):
        return
    carrier[REAPED] = True
    _wire.send_line(
        b'{"k":"exited","span":"%s","value":%d,"pid":%d,"at":%d}\n'
        % (carrier["span"].encode(), code, proc._popen.pid, time.time_ns())
    )
    if _run.in_process_collector:
        _run.wait_delivered(carrier["span"], JOIN_WAIT)


REAPED = "reaped"  # the carrier's key once the exit code was reported
