"""``@traced``: the one thing a user writes."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar, cast, overload

P = ParamSpec("P")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class TraceSpec:
    """How one decorated function is recorded."""

    name: str | None = None
    record_args: bool = True
    redact: tuple[str, ...] = ()
    # SIGTERM is how pools stop their workers: for them it is not a failure.
    terminate_is_normal: bool = False


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

        @functools.wraps(target)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            from . import _child

            return cast(R, _child.call(wrapper, target, spec, args, kwargs))

        wrapper.__proctrace__ = spec  # type: ignore[attr-defined]
        from . import _patch, _runtime

        _patch.install(by_decorator=True)
        _runtime.prepare_main()
        return wrapper

    if fn is not None:
        return decorate(fn)
    return decorate


def spec_of(target: Any) -> TraceSpec | None:
    """The TraceSpec of a ``@traced`` function, or None."""
    spec = getattr(target, "__proctrace__", None)
    return spec if isinstance(spec, TraceSpec) else None
