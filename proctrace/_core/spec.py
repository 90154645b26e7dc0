"""How one traced function is recorded, and the names a span takes from its function."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class TraceSpec:
    """How one decorated function is recorded."""

    name: str | None = None
    record_args: bool = True
    redact: tuple[str, ...] = ()
    # SIGTERM is how pools stop their workers: for them it is not a failure.
    terminate_is_normal: bool = False


PLAIN = TraceSpec()  # an undecorated target followed under instrument()


def spec_of(target: Any) -> TraceSpec | None:
    """The TraceSpec of a ``@traced`` function (or of a traced stand-in), or None."""
    spec = getattr(target, "__proctrace__", None)
    return spec if isinstance(spec, TraceSpec) else None


def function_name(target: Callable[..., Any]) -> str:
    """Module-qualified name, with ``__main__`` for a spawn child's ``__mp_main__``."""
    module = getattr(target, "__module__", None) or "?"
    if module == "__mp_main__":
        module = "__main__"
    return f"{module}.{getattr(target, '__qualname__', type(target).__qualname__)}"


def span_name(target: Callable[..., Any], spec: TraceSpec) -> str:
    return spec.name or str(getattr(target, "__qualname__", function_name(target)))
