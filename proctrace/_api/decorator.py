"""``@traced``: the one thing a user writes."""

from __future__ import annotations

import functools
import multiprocessing
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar, cast, overload

from .._child import forked as _forked
from .._child import forkstart as _forkstart
from .._child import run as _run
from .._child import span as _span
from .._core.names import CARRIER_ATTR
from .._core.spec import TraceSpec
from .._hooks import install as _hooks
from .._hooks import registry

_current_process = multiprocessing.current_process
P = ParamSpec("P")
R = TypeVar("R")


@overload
def traced(fn: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def traced(
    *, name: str | None = None, record_args: bool = True, redact: Iterable[str] = ()
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def traced(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    record_args: bool = True,
    redact: Iterable[str] = (),
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Trace a process target: its process gets a span linked to where it was started.

    Use bare (``@traced``) or with options: ``name`` replaces the span name
    (default: the function's ``__qualname__``), ``record_args=False`` records no
    arguments, ``redact`` adds names whose values are replaced by
    ``[REDACTED]`` (secret-looking names always are). The result stays
    picklable by reference, so spawn and forkserver children can import it.
    Called directly rather than as a process target, the function gets a span
    of its own under the current one.
    """
    if isinstance(redact, str):
        raise TypeError("redact takes a sequence of names, not one string")
    spec = TraceSpec(name=name, record_args=record_args, redact=tuple(n.lower() for n in redact))

    def decorate(target: Callable[P, R]) -> Callable[P, R]:
        if not callable(target):
            raise TypeError(f"@traced needs a function, not {type(target).__name__}")

        wrapper: Callable[P, R]
        if _is_coroutine_function(target):

            @functools.wraps(target)
            async def awaited(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await call_async(target, spec, args, kwargs)

            wrapper = cast(Callable[P, R], awaited)
        else:

            @functools.wraps(target)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                return cast(R, call(target, spec, args, kwargs))

        wrapper.__proctrace__ = spec  # type: ignore[attr-defined]
        _hooks.install(by_decorator=True)
        _prepare_main()
        return wrapper

    if fn is not None:
        return decorate(fn)
    return decorate


_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE


def _is_coroutine_function(fn: Any) -> bool:
    """``inspect.iscoroutinefunction(fn)``, without importing ``inspect`` (and ``ast``,
    ``dis``, ``tokenize``) into a program that has not: a bigger parent forks slower."""
    inspect = sys.modules.get("inspect")
    if inspect is not None:  # also honours inspect.markcoroutinefunction (3.12)
        return bool(inspect.iscoroutinefunction(fn))
    while isinstance(fn, functools.partial):
        fn = fn.func
    fn = getattr(fn, "__func__", fn)  # a bound method
    code = getattr(fn, "__code__", None)
    return code is not None and bool(code.co_flags & _CO_COROUTINE)


def call(
    target: Callable[..., Any], spec: TraceSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> Any:
    """The ``@traced`` wrapper's body: a process span for the process target, else a span."""
    proc = _current_process()
    carrier = proc.__dict__.get(CARRIER_ATTR)
    if carrier is not None and _forkstart.KEY in carrier:
        # A fork child whose start its starter prepared, and this its target (the first
        # traced call takes it): the short way, as few objects touched as can be.
        return _forked.run(proc, carrier.pop(_forkstart.KEY), target, args, kwargs)
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


registry.set_traced_call(call)


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


def _prepare_main() -> None:
    """Install proctrace's provider in the main program (children never load the starter)."""
    if _run.in_main_program():
        from .._starter import run as _starter

        _starter.prepare_main()
