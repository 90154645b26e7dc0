"""``@traced``: the one thing a user writes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar, cast, overload

from .._child import run as _run
from .._core import arguments as _arguments
from .._core.frames import drop_own
from .._core.spec import TraceSpec
from .._hooks import install as _hooks
from .._hooks.calls import call, call_async, call_async_generator, call_generator

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
    _arguments.add_given(spec.redact)  # what an exception or a log event says is cleaned of them

    def decorate(target: Callable[P, R]) -> Callable[P, R]:
        if not callable(target):
            raise TypeError(f"@traced needs a function, not {type(target).__name__}")

        wrapper: Callable[P, R]
        if _is_coroutine_function(target):

            @functools.wraps(target)
            async def awaited(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await call_async(target, spec, args, kwargs)

            wrapper = cast(Callable[P, R], awaited)
        elif _has_flag(target, _CO_GENERATOR, "isgeneratorfunction"):

            @functools.wraps(target)
            def generator(*args: P.args, **kwargs: P.kwargs) -> Any:
                return (yield from call_generator(cast(Any, target), spec, args, kwargs))

            wrapper = cast(Callable[P, R], generator)
        elif _has_flag(target, _CO_ASYNC_GENERATOR, "isasyncgenfunction"):

            @functools.wraps(target)
            async def async_generator(*args: P.args, **kwargs: P.kwargs) -> Any:
                inner = call_async_generator(cast(Any, target), spec, args, kwargs)
                sent: Any = None
                thrown: BaseException | None = None
                while True:  # what the consumer sends and throws goes in, as with yield from
                    try:
                        if thrown is None:
                            item = await inner.asend(sent)
                        else:
                            item = await inner.athrow(thrown)
                    except StopAsyncIteration:
                        return
                    sent, thrown = None, None
                    try:
                        sent = yield item
                    except GeneratorExit:
                        await inner.aclose()
                        raise
                    except BaseException as exc:
                        thrown = exc

            wrapper = cast(Callable[P, R], async_generator)
        else:

            @functools.wraps(target)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                try:
                    return cast(R, call(target, spec, args, kwargs))
                except BaseException as exc:  # shown from here on: the function's frames
                    drop_own(exc)
                    raise

        wrapper.__proctrace__ = spec  # type: ignore[attr-defined]
        _hooks.install(by_decorator=True)
        _prepare_main()
        return wrapper

    if fn is not None:
        return decorate(fn)
    return decorate


_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE
_CO_GENERATOR = 0x20  # inspect.CO_GENERATOR
_CO_ASYNC_GENERATOR = 0x200  # inspect.CO_ASYNC_GENERATOR


def _is_coroutine_function(fn: Any) -> bool:
    """``inspect.iscoroutinefunction(fn)``, without importing ``inspect`` (and ``ast``,
    ``dis``, ``tokenize``) into a program that has not: a bigger parent forks slower."""
    return _has_flag(fn, _CO_COROUTINE, "iscoroutinefunction")


def _has_flag(fn: Any, flag: int, check: str) -> bool:
    """``inspect.<check>(fn)`` where the program loaded ``inspect`` (which also honours
    ``inspect.markcoroutinefunction``, 3.12), else the code object's ``flag``."""
    inspect = sys.modules.get("inspect")
    if inspect is not None:
        return bool(getattr(inspect, check)(fn))
    while isinstance(fn, functools.partial):
        fn = fn.func
    fn = getattr(fn, "__func__", fn)  # a bound method
    code = getattr(fn, "__code__", None)
    return code is not None and bool(code.co_flags & flag)


def _prepare_main() -> None:
    """Install proctrace's provider in the main program (children never load the starter)."""
    if _run.in_main_program():
        from .._starter import run as _starter

        _starter.prepare_main()
