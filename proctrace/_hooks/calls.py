"""The ``@traced`` wrapper's body: what a call of a traced function does, where it runs.

Kept with the hooks rather than the public API: a traced function that travels without
its wrapper (``dask_portable.Portable``) is called through it in a process that may never
have imported the decorator.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any

from .._child import run as _run
from .._child import span as _span
from .._core.names import CARRIER_ATTR, FORK_PREPARED, FORKED_MODULE
from .._core.spec import TraceSpec
from . import registry

_current_process = multiprocessing.current_process
_modules = sys.modules


def call(
    target: Callable[..., Any], spec: TraceSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> Any:
    """The ``@traced`` wrapper's body: a process span for the process target, else a span."""
    proc = _current_process()
    carrier = proc.__dict__.get(CARRIER_ATTR)
    if carrier is not None and FORK_PREPARED in carrier:
        # A fork child whose start its starter prepared, and this its target (the first
        # traced call takes it): the short way, as few objects touched as can be. Its
        # starter loaded the module (``_child.run.prepare_fork``); a spawn child never does.
        forked = _modules[FORKED_MODULE]
        return forked.run(proc, carrier.pop(FORK_PREPARED), target, args, kwargs)
    carrier = _run.carrier_of(proc)
    if _run.is_process_target(proc, carrier):
        assert carrier is not None
        if carrier.get("instrument") and not registry.instrumenting():
            registry.enable_instrument()  # grandchildren and pool tasks of this child too
        return _run.run_process(target, spec, carrier, args, kwargs)
    if carrier is not None:
        if not carrier.get("sampled", True) and _span.unsampled_here():
            # A trace that is not recorded (always_off, a ratio that said no): the call runs
            # as untraced, as run_call() would decide, without its work on every call.
            return target(*args, **kwargs)
        return _run.run_call(target, spec, carrier, args, kwargs)
    from .._starter import run as _starter  # a child started before tracing began

    if not _starter.is_main_program():
        return target(*args, **kwargs)  # a child started before tracing began
    runtime = _starter.ensure()
    if runtime is None:
        return target(*args, **kwargs)
    parent = _run.current_parent() or runtime.root_ids()
    return _run.run_call(target, spec, None, args, kwargs, parent, settings=runtime.settings)


async def call_async(
    target: Callable[..., Any], spec: TraceSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> Any:
    """The wrapper's body for a coroutine function: a span around the awaited work, under the
    span current where it is awaited. Never a process span: multiprocessing does not await a
    coroutine function given as a target (``asyncio.run()`` it from a plain one)."""
    carrier = _run.carrier_of(multiprocessing.current_process())
    if carrier is not None:
        return await _run.await_call(target, spec, carrier, args, kwargs)
    from .._starter import run as _starter

    runtime = _starter.ensure() if _starter.is_main_program() else None
    if runtime is None:  # disabled, or a child started before tracing began
        return await target(*args, **kwargs)
    parent = _run.current_parent() or runtime.root_ids()
    return await _run.await_call(
        target, spec, None, args, kwargs, parent, settings=runtime.settings
    )


def call_generator(
    target: Callable[..., Generator[Any, Any, Any]],
    spec: TraceSpec,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> Generator[Any, Any, Any]:
    """The wrapper's body for a generator function: a span around the iteration, under the
    span current where it is first resumed (``_child.generators``)."""
    from .._child import generators as _generators

    carrier = _run.carrier_of(multiprocessing.current_process())
    if carrier is not None:
        if not carrier.get("sampled", True) and _span.unsampled_here():
            return (yield from target(*args, **kwargs))
        return (yield from _generators.iterate_call(target, spec, carrier, args, kwargs))
    from .._starter import run as _starter

    runtime = _starter.ensure() if _starter.is_main_program() else None
    if runtime is None:  # disabled, or a child started before tracing began
        return (yield from target(*args, **kwargs))
    parent = _run.current_parent() or runtime.root_ids()
    return (
        yield from _generators.iterate_call(
            target, spec, None, args, kwargs, parent, settings=runtime.settings
        )
    )


def call_async_generator(
    target: Callable[..., AsyncGenerator[Any, Any]],
    spec: TraceSpec,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> AsyncGenerator[Any, Any]:
    """``call_generator()`` for an async generator function: the async generator the wrapper
    hands on, made when the wrapper is first resumed."""
    from .._child import generators as _generators

    carrier = _run.carrier_of(multiprocessing.current_process())
    if carrier is not None:
        if not carrier.get("sampled", True) and _span.unsampled_here():
            return target(*args, **kwargs)
        return _generators.iterate_async(target, spec, carrier, args, kwargs)
    from .._starter import run as _starter

    runtime = _starter.ensure() if _starter.is_main_program() else None
    if runtime is None:  # disabled, or a child started before tracing began
        return target(*args, **kwargs)
    parent = _run.current_parent() or runtime.root_ids()
    return _generators.iterate_async(
        target, spec, None, args, kwargs, parent, settings=runtime.settings
    )
