"""Arguments as safe text: bounded reprs, and secrets replaced before anything is recorded."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

REDACTED = "[REDACTED]"
SECRET_WORDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "credential",
    "private_key",
)
_MAX_DEPTH = 6


def is_secret(name: object, extra: tuple[str, ...] = ()) -> bool:
    """True when a key or parameter name looks like it holds a secret (case-insensitive)."""
    if not isinstance(name, str):
        return False
    lowered = name.lower().replace("-", "_")
    return any(word in lowered for word in SECRET_WORDS) or any(
        word in lowered for word in extra
    )


class _Redacted:
    __slots__ = ()

    def __repr__(self) -> str:
        return REDACTED


_REDACTED = _Redacted()


class _TooDeep:
    __slots__ = ()

    def __repr__(self) -> str:
        return "[...]"


_TOO_DEEP = _TooDeep()


class _Shown:
    """Stands in for a dataclass whose secret fields were replaced."""

    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: dict[str, object]) -> None:
        self.name = name
        self.fields = fields

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"{self.name}({inner})"


def scrub(value: object, extra: tuple[str, ...] = (), depth: int = 0) -> object:
    """Return ``value``, or a stand-in with secret-looking keys and fields redacted.

    Mappings, dataclass instances, lists and tuples are searched a few levels
    deep; the original object is returned untouched when nothing was secret.
    """
    if depth > _MAX_DEPTH:
        return _TOO_DEEP  # not searched, so not shown
    try:
        if isinstance(value, Mapping):
            changed = False
            out: dict[object, object] = {}
            for key, item in value.items():
                new = _REDACTED if is_secret(key, extra) else scrub(item, extra, depth + 1)
                changed = changed or new is not item
                out[key] = new
            return out if changed else value
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {
                f.name: (
                    _REDACTED
                    if is_secret(f.name, extra)
                    else scrub(getattr(value, f.name), extra, depth + 1)
                )
                for f in dataclasses.fields(value)
                if f.repr
            }
            if any(fields[k] is not getattr(value, k) for k in fields):
                return _Shown(type(value).__qualname__, fields)
            return value
        if isinstance(value, list | tuple):
            items = [scrub(item, extra, depth + 1) for item in value]
            if any(new is not old for new, old in zip(items, value, strict=True)):
                return items if isinstance(value, list) else tuple(items)
    except Exception:  # a hostile __eq__, items() or property: keep the original
        return value
    return value


def safe_repr(value: object, limit: int) -> str:
    """``repr(value)`` cut to ``limit`` characters; never raises."""
    try:
        text = repr(value)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        try:
            kind = type(value).__name__
        except Exception:  # pragma: no cover - type() always works on CPython
            kind = "object"
        return f"<unrepresentable {kind}: {type(exc).__name__}>"
    if not isinstance(text, str):  # pragma: no cover - repr() enforces str
        text = str(text)
    if len(text) > limit:
        return text[: limit - 1] + "…"
    return text


_PARAM_NAMES: dict[Callable[..., Any], tuple[str, ...]] = {}


def positional_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    """Names of ``fn``'s positional parameters (cached), to redact secrets passed by position."""
    names = _PARAM_NAMES.get(fn)
    if names is None:
        try:
            params = inspect.signature(fn).parameters.values()
            names = tuple(
                p.name
                for p in params
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            )
        except (TypeError, ValueError):
            names = ()
        _PARAM_NAMES[fn] = names
    return names


_SELF: dict[Callable[..., Any], bool] = {}


def takes_self(fn: Callable[..., Any]) -> bool:
    """True for a function defined in a class whose first parameter is ``self`` or ``cls``:
    called through the class, its first argument is the instance (cached)."""
    found = _SELF.get(fn)
    if found is None:
        qualname = str(getattr(fn, "__qualname__", ""))
        owner = qualname.rpartition(".")[0]
        names = positional_names(fn)
        found = _SELF[fn] = bool(
            owner and not owner.endswith("<locals>") and names and names[0] in ("self", "cls")
        )
    return found


_PLAIN = (int, float, str, bool, type(None))
_SECRET_POSITIONS: dict[tuple[Callable[..., Any], tuple[str, ...]], tuple[bool, ...]] = {}


def secret_positions(fn: Callable[..., Any], extra: tuple[str, ...]) -> tuple[bool, ...]:
    """Which positional parameters of ``fn`` look secret (cached per function)."""
    found = _SECRET_POSITIONS.get((fn, extra))
    if found is None:
        found = _SECRET_POSITIONS[(fn, extra)] = tuple(
            is_secret(name, extra) for name in positional_names(fn)
        )
    return found


def _shown(value: object, limit: int, extra: tuple[str, ...]) -> str:
    if type(value) in _PLAIN:  # nothing inside to redact
        return safe_repr(value, limit)
    return safe_repr(scrub(value, extra), limit)


def describe(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    limit: int,
    extra: tuple[str, ...] = (),
) -> tuple[list[str], dict[str, str]]:
    """Reprs of the positional and keyword arguments, redacted and truncated; a method's
    ``self`` (or ``cls``) is not an argument the caller passed, so it is left out."""
    secret = secret_positions(fn, extra)
    first = 1 if args and takes_self(fn) else 0
    shown_args = [
        REDACTED if i < len(secret) and secret[i] else _shown(args[i], limit, extra)
        for i in range(first, len(args))
    ]
    shown_kwargs = {
        str(key): REDACTED if is_secret(key, extra) else _shown(val, limit, extra)
        for key, val in kwargs.items()
    }
    return shown_args, shown_kwargs
