"""Pool tasks: a span per call, written in the worker as the OTLP message it is exported as.

A pool runs the same function for thousands of tasks submitted from one span, so
what their spans share (the trace, the parent, the name, the worker's attributes)
is worked out and encoded once per worker (a ``_Plan``). Each call then costs its
span id, its times, its arguments described and one record: an OTLP ``Span``
message (``protobuf.TaskSpans``) the agent forwards without decoding. A call that
failed, logged span events, or whose span got attributes while it ran, ends the
general way (``Span.end``): those are rare, and say more.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._core import arguments as _arguments
from .._core import ids as _ids
from .._core import names
from .._core.ids import SpanRef
from .._core.spec import TraceSpec, function_name, span_name, takes_self
from . import outcome as _outcome
from . import run as _run
from . import span as _span
from . import wire as _wire
from .follow import follow_program

if TYPE_CHECKING:
    from .._otlp.protobuf import TaskSpans


class _Plan:
    """What every call of one function submitted from one span shares, in this worker."""

    __slots__ = (
        "address", "attrs", "cpu_back", "encoder", "end_at", "extra", "limit", "name",
        "parent", "parent_id", "pid", "record_args", "secret", "secret_any", "skip_self",
        "target", "trace_id",
    )

    def __init__(
        self,
        target: Callable[..., Any],
        name: str,
        parent: SpanRef,
        attrs: dict[str, Any],
        encoder: TaskSpans,
        address: str,
        record_args: bool,
        limit: int,
        extra: tuple[str, ...],
    ) -> None:
        self.target = target
        self.name = name
        self.parent = parent
        self.attrs = attrs  # the function's (the worker's go once per connection)
        self.encoder = encoder
        # Where the end time and the CPU time go in a message encoded before the call.
        self.end_at, self.cpu_back = encoder.end_at, encoder.CPU_BACK
        self.address = address
        self.record_args = record_args
        self.limit = limit
        self.extra = extra
        self.secret = _arguments.secret_positions(target, extra)
        self.secret_any = any(self.secret)
        self.skip_self = takes_self(target)
        self.pid = _ids.pid()
        self.trace_id, self.parent_id = parent.trace_id, parent.span_id


# Plans by what a task carries: its function and the traceparent it was submitted under.
_plans: dict[tuple[Any, str], _Plan] = {}
_MAX_PLANS = 256


def find(fn: Any, traceparent: str) -> _Plan | None:
    """The plan of tasks of ``fn`` submitted under ``traceparent`` in this process, if one
    was made (``run_task``) and still holds."""
    try:
        plan = _plans.get((fn, traceparent))
    except TypeError:  # a callable instance whose class has __eq__ without __hash__
        return None
    if plan is None or plan.pid != _pid[0] or _wire.address() != plan.address:
        return None
    return plan


_pid = _ids._pid  # what ids.pid() reads, read here without the call


def run_task(
    target: Callable[..., Any],
    spec: TraceSpec,
    carrier: dict[str, Any] | None,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    parent: SpanRef,
    key: tuple[Any, str] | None = None,
) -> Any:
    """A pool task's call inside its span, under ``parent`` (where it was submitted); with
    ``key`` (what the task carries: its function, or the function a partial or a method
    reaches, and its traceparent), later tasks alike find its plan."""
    if carrier is None or not parent.sampled:
        return _run.run_call(target, spec, carrier, args, kwargs, parent=parent)
    plan = find(*key) if key is not None else None
    if plan is None or plan.target is not target:
        plan = _plan(target, spec, carrier, parent)
        if plan is None:
            return _run.run_call(target, spec, carrier, args, kwargs, parent=parent)
        if key is not None:
            if len(_plans) >= _MAX_PLANS:
                _plans.clear()
            _plans[key] = plan
    return run(plan, args, kwargs)


def run(plan: _Plan, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """One call of the plan's function, in its span. Pool tasks are many and short: this
    runs for each, so it calls little and builds little (about 5 µs here).

    The span is written before the call, as it will be sent, and held in the ring's slot
    while the call runs (``_core.ring``): if the process dies under the task, the collector
    ends it as the process ended. Once the call returns, its end time and CPU time are
    written into that message, and it is sent."""
    span = _Span.for_task(plan.name, plan.trace_id, plan.parent_id)
    shown_args, shown_kwargs = _describe(plan, args, kwargs)
    message = plan.encoder.encode(span.span_id, span.start_ns, 0, shown_args, shown_kwargs, 0.0)
    ring = _wire._ring or _wire.task_ring()  # the plan is this process's (find())
    held = ring.hold(message) if ring is not None else False
    cpu0 = _thread_time()  # this thread's: other threads' work is not the call's
    state = _enter(span)
    try:
        result = plan.target(*args, **kwargs)
    except BaseException as exc:
        _leave(span, state)
        if _pid[0] == plan.pid:  # else a copy made by os.fork() in the task: not its span
            if held and ring is not None:
                ring.free()
            cpu = (_thread_time() - cpu0) // 1000 / 1e6
            status, message_ = _outcome.failed_status(span, exc)
            _end(span, plan, shown_args, shown_kwargs, status, message_, cpu)
        raise
    _leave(span, state)
    cpu = (_thread_time() - cpu0) // 1000 / 1e6
    if _pid[0] != plan.pid:  # a copy made by os.fork() in the task: not its span (nor the
        return result  # slot: the copy shares its parent's ring, and leaves it alone)
    if held and ring is not None:
        ring.free()
    if span.events or span.attributes:  # log events, or a count of those dropped
        _end(span, plan, shown_args, shown_kwargs, _span.STATUS_UNSET, "", cpu)
        return result
    ended = bytearray(message)
    _pack_time(ended, plan.end_at, _time_ns())
    _pack_cpu(ended, len(ended) - plan.cpu_back, cpu)
    _send_encoded(ended)
    return result


# Bound once: run() is the one function every pool task goes through.
_Span = _span.Span
_enter, _leave = _span.enter, _span.leave
# CPU time in whole µs, from ns: round(seconds, 6) costs ~0.4 µs a task (as text, then back)
_thread_time, _time_ns = time.thread_time_ns, time.time_ns
_send_encoded = _wire.send_encoded
_pack_time, _pack_cpu = struct.Struct("<Q").pack_into, struct.Struct("<d").pack_into
_describe = _arguments.describe_planned


def _end(
    span: _span.Span,
    plan: _Plan,
    shown_args: list[str] | None,
    shown_kwargs: dict[str, str],
    status: int,
    message: str,
    cpu: float,
) -> None:
    """End a call's span the general way, with the attributes the encoder would have written."""
    attributes = dict(plan.attrs)
    if shown_args is not None:
        attributes[names.ARGS] = shown_args
    for name, value in shown_kwargs.items():
        attributes[names.KWARGS_PREFIX + name] = value
    span.attributes = {**attributes, **span.attributes}
    span.end(status, message, {names.TASK_CPU: cpu})


def _plan(
    target: Callable[..., Any], spec: TraceSpec, carrier: dict[str, Any], parent: SpanRef
) -> _Plan | None:
    settings = _run.carrier_settings(carrier)
    if settings.disabled:
        return None
    import multiprocessing

    from .._otlp.protobuf import TaskSpans  # only in processes that run pool tasks

    address = carrier["socket"]
    if _wire.address() != address:  # a spawn worker whose own target is not traced
        _wire.set_address(address)
    follow_program(settings, child=True)
    process = _run.process_attributes(multiprocessing.current_process(), carrier)
    _wire.set_defaults(process)  # for the calls that end the general way
    attrs = {names.FUNCTION: function_name(target)}
    name = span_name(target, spec)
    encoder = TaskSpans(parent.trace_id, parent.span_id, name, {**process, **attrs})
    return _Plan(
        target, name, parent, attrs, encoder, address, spec.record_args, settings.max_repr,
        spec.redact + settings.redact,
    )
