"""How one traced function is recorded, and the names a span takes from its function."""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple


class TraceSpec(NamedTuple):
    """How one decorated function is recorded (a NamedTuple: see ``config.Settings``)."""

    name: str | None = None
    record_args: bool = True
    redact: tuple[str, ...] = ()
    # SIGTERM is how pools stop their workers: for them it is not a failure.
    terminate_is_normal: bool = False


PLAIN = TraceSpec()  # an undecorated target followed under instrument()


def spec_of(target: Any) -> TraceSpec | None:
    """The TraceSpec of a ``@traced`` function (or of a traced stand-in), or None; also seen
    through a ``functools.partial``, a bound method and a callable instance whose class has a
    traced ``__call__``."""
    spec = getattr(target, "__proctrace__", None)
    if isinstance(spec, TraceSpec):
        return spec
    if type(target) is types.FunctionType:
        return None  # the common case: nothing to see through
    reached = resolve(target)[0]
    if reached is target:
        return None
    spec = getattr(reached, "__proctrace__", None)
    return spec if isinstance(spec, TraceSpec) else None


_PLAIN_CALLABLES = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    type,
)


def resolve(
    target: Any, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None
) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """The function a call of ``target(*args, **kwargs)`` reaches, with the arguments it
    reaches it with: a partial's own arguments merged in (as the call sees them), a bound
    method's or a callable instance's ``self`` put first. Calling the result is the call."""
    kwargs = dict(kwargs or {})
    for _ in range(16):  # a partial of a partial of ... is flattened by CPython anyway
        if isinstance(target, functools.partial):
            args = (*target.args, *args)
            kwargs = {**target.keywords, **kwargs}
            target = target.func
        elif isinstance(target, types.MethodType):
            args = (target.__self__, *args)
            target = target.__func__
        elif callable(target) and not isinstance(target, _PLAIN_CALLABLES) and not hasattr(
            target, "__proctrace__"
        ):
            # The class's own __call__, looked up as the call does (not on the instance).
            owner = next((c for c in type(target).__mro__ if "__call__" in vars(c)), object)
            call = vars(owner).get("__call__")
            if not isinstance(call, types.FunctionType):
                break  # a C-level __call__: the object is the function
            args = (target, *args)
            target = call
        else:
            break
    return target, args, kwargs


_SELF: dict[Any, bool] = {}


def signature_key(fn: Any) -> Any:
    """What caches of a function's parameters are keyed by: a plain function's code and
    qualified name, so that copies of it (a Dask task's function, unpickled anew for each
    task) share one entry instead of each adding its own; anything else itself."""
    if type(fn) is types.FunctionType:
        own = fn.__dict__
        if "__wrapped__" not in own and "__signature__" not in own:
            return (fn.__code__, fn.__qualname__)
    return fn


def code_parameters(fn: Any) -> tuple[str, ...] | None:
    """A plain function's positional parameter names, from its code object; None when only
    ``inspect.signature`` can tell (a ``__wrapped__`` or ``__signature__`` to follow, not a
    Python function). Reading the code object spares the program importing ``inspect``."""
    if signature_key(fn) is fn:  # not a plain function (see signature_key)
        return None
    code = fn.__code__
    return tuple(code.co_varnames[: code.co_argcount])


def takes_self(fn: Any) -> bool:
    """True for a function defined in a class whose first parameter is ``self`` or ``cls``:
    called through the class, its first argument is the instance (cached)."""
    key = signature_key(fn)
    found = _SELF.get(key)
    if found is None:
        owner = str(getattr(fn, "__qualname__", "")).rpartition(".")[0]
        names = code_parameters(fn)
        if names is not None:
            first = names[0] if names else None
        else:
            import inspect  # only here: a program that never needs it does not load it

            try:
                first = next(iter(inspect.signature(fn).parameters), None)
            except (TypeError, ValueError):
                first = None
        found = _SELF[key] = bool(
            owner and not owner.endswith("<locals>") and first in ("self", "cls")
        )
    return found


def function_of(target: Any) -> Any:
    """The user's own function behind a target (through partials, methods, instances and
    the ``@traced`` wrapper): what its arguments are described against."""
    reached = resolve(target)[0]
    if isinstance(getattr(reached, "__proctrace__", None), TraceSpec):
        return getattr(reached, "__wrapped__", reached)
    return reached


def function_name(target: Callable[..., Any]) -> str:
    """Module-qualified name, with ``__main__`` for a spawn child's ``__mp_main__``."""
    module = getattr(target, "__module__", None) or "?"
    if module == "__mp_main__":
        module = "__main__"
    return f"{module}.{getattr(target, '__qualname__', type(target).__qualname__)}"


def span_name(target: Callable[..., Any], spec: TraceSpec) -> str:
    return spec.name or str(getattr(target, "__qualname__", function_name(target)))
