"""A ``@traced`` function as Dask sends it to a worker (``Portable``): the function it wraps
and its options. Dask pickles the function of every task it sends, a program's own by value;
the wrapper, defined in ``__main__``, cost three times what the plain function does. A
``Portable`` pickles as the function's bytes, made once per submission (per function object
the scheduler got), and its ``TraceSpec``; a worker loads each function's bytes once.
"""

from __future__ import annotations

from types import FunctionType
from typing import Any

from .._core.spec import PLAIN, TraceSpec
from .calls import call
from .targets import StandIn

__all__ = ["Portable", "dask_own", "portable"]

_CO_COROUTINE = 0x80


class Portable(StandIn):
    """A ``@traced`` function as Dask sends it to a worker: called, it is the wrapper's call
    (``calls.call``); pickled, it is the function it wraps (pickled by
    cloudpickle once, as ``_payload``) and its ``TraceSpec``."""

    __slots__ = ("_payload",)

    def __init__(self, target: Any, spec: TraceSpec) -> None:
        StandIn.__init__(self, target, spec)
        self._payload: bytes | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return call(self.target, self.spec, args, kwargs)

    def __repr__(self) -> str:  # Dask names a task's function in its logs and errors
        return f"<traced {self.target!r}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # The scheduler pickles every task it sends, the function with it (by value, for a
        # program's own): the function's bytes are made once, and a pickle of bytes finds
        # no function it cannot pickle by reference, which would make Dask try three ways.
        if self._payload is None:
            import cloudpickle  # type: ignore[import-untyped,unused-ignore]  # with Dask

            self._payload = cloudpickle.dumps(self.target)
        return (_revive, (self._payload, self.spec))


def _revive(payload: bytes, spec: TraceSpec) -> Portable:
    """A ``Portable`` unpickled: its function loaded once per payload in this process, as
    Dask's own ``cache_loads`` did for the functions of its tasks."""
    target = _revived.get(payload)
    if target is None:
        import pickle

        target = pickle.loads(payload)
        if len(_revived) >= 64:
            _revived.clear()
        _revived[payload] = target
    return Portable(target, spec)


_revived: dict[bytes, Any] = {}


def portable(fn: Any, scope: Any = None, everything: bool = False) -> Portable | None:
    """``fn`` as a ``Portable`` when it is a ``@traced`` wrapper of a plain function, or with
    ``everything`` (every task traced: ``instrument()``) a plain function of the program's
    own (not Dask's, whose tasks are named after their keys; a coroutine function stays as
    it is: Dask awaits what is one). With ``scope`` (the tasks' Dask task group), one per
    function object and scope, which keeps the function's bytes. The scheduler unpickles a
    new function object with each submission (a ``submit``, a ``map``), so the globals a
    function sent by value carries are those of when its work was submitted, as without
    proctrace; the group keeps an object seen again from being taken for another's."""
    if scope is not None:
        found = _portables.get(id(fn))
        if found is not None and found[0] is fn and found[1] is scope:
            return found[2]
    if type(fn) is not FunctionType:
        return None
    spec = getattr(fn, "__proctrace__", None)
    if isinstance(spec, TraceSpec):
        target = getattr(fn, "__wrapped__", None)
    elif everything and spec is None and not dask_own(fn):
        target, spec = fn, PLAIN
    else:
        return None
    if type(target) is not FunctionType or fn.__code__.co_flags & _CO_COROUTINE:
        return None
    light = Portable(target, spec)
    if scope is not None:
        if len(_portables) >= 64:
            _portables.clear()
        _portables[id(fn)] = (fn, scope, light)
    return light


def dask_own(fn: Any) -> bool:
    """True for a function of Dask's own (a fused subgraph's, a bag's ``map_chunk``)."""
    module = str(getattr(fn, "__module__", None) or "")
    return module.split(".")[0] in ("dask", "distributed")


# The Portable of each @traced wrapper the scheduler sent, by the wrapper's id (the wrapper
# and the task group kept with it).
_portables: dict[int, tuple[Any, Any, Portable]] = {}
