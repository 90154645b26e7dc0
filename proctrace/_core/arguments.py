"""A call's arguments described for a span: their reprs, redacted and cut, ``self`` left out.

Secrets are found by name (a parameter or keyword whose name looks secret is shown as
``[REDACTED]``) and inside values (``redact.scrub``, ``redact.safe_repr``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from .redact import NUMBERS, REDACTED, forms_of, is_secret, safe_repr, scrub
from .reprs import bounded
from .spec import code_parameters, signature_key, takes_self

_PARAM_NAMES: dict[Any, tuple[str, ...]] = {}
# The names given to ``redact=`` this process has seen (a ``@traced`` function's, the
# settings'): what is no one call's arguments (what an exception says, a log event) is
# cleaned of their values too (``redact_text(text, given)``).
given: tuple[str, ...] = ()


def add_given(names: Iterable[str]) -> None:
    """Add ``redact=`` names (lower case) to ``given``: it only grows, hiding more is safe."""
    global given
    given += tuple(name for name in dict.fromkeys(names) if name and name not in given)


def positional_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    """Names of ``fn``'s positional parameters (cached), to redact secrets passed by position."""
    key = signature_key(fn)
    names = _PARAM_NAMES.get(key)
    if names is None:
        names = code_parameters(fn)
    if names is None:
        import inspect  # only here: a program that never needs it does not load it

        try:
            params = inspect.signature(fn).parameters.values()
            names = tuple(
                p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            )
        except (TypeError, ValueError):
            names = ()
        _PARAM_NAMES[key] = names
    return names


_SECRET_POSITIONS: dict[tuple[Any, tuple[str, ...]], tuple[bool, ...]] = {}


def secret_positions(fn: Callable[..., Any], extra: tuple[str, ...]) -> tuple[bool, ...]:
    """Which positional parameters of ``fn`` look secret (cached per function)."""
    key = (signature_key(fn), extra)
    found = _SECRET_POSITIONS.get(key)
    if found is None:
        found = _SECRET_POSITIONS[key] = tuple(
            is_secret(name, extra) for name in positional_names(fn)
        )
    return found


def _shown(value: object, limit: int, extra: tuple[str, ...]) -> str:
    kind = type(value)
    short = kind is str and len(value) <= limit  # type: ignore[arg-type]
    if kind in NUMBERS or (short and str.isalnum(value)):  # type: ignore[arg-type]
        return bounded(value, limit)  # nothing inside to redact (isalnum reads all of it)
    if kind is str:
        return safe_repr(value, limit, extra)  # its repr is cleaned as text
    return safe_repr(scrub(value, extra), limit, extra)


def describe(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], *, limit: int,
    extra: tuple[str, ...] = (),
) -> tuple[list[str], dict[str, str]]:
    """Reprs of the positional and keyword arguments, redacted and truncated; a method's
    ``self`` (or ``cls``) is not an argument the caller passed, so it is left out."""
    return describe_as(secret_positions(fn, extra), takes_self(fn), args, kwargs, limit, extra)


def describe_plain(args: tuple[Any, ...], limit: int, extra: tuple[str, ...]) -> list[str]:
    """``describe_as()`` for a call whose positional parameters are not secret, that takes
    no ``self`` and got no keyword arguments (a pool task's, most of the time); small ints
    straight to their repr."""
    return [
        repr(a) if type(a) is int and -_SMALL_INT < a < _SMALL_INT and limit > 20
        else _shown(a, limit, extra)
        for a in args
    ]


_SMALL_INT = 10**18


def describe_as(
    secret: tuple[bool, ...], skip_self: bool, args: tuple[Any, ...], kwargs: Mapping[str, Any],
    limit: int, extra: tuple[str, ...],
) -> tuple[list[str], dict[str, str]]:
    """``describe()`` given the function's secret positions and whether it takes ``self``."""
    first = 1 if args and skip_self else 0
    shown_args = [
        REDACTED if i < len(secret) and secret[i] else _shown(args[i], limit, extra)
        for i in range(first, len(args))
    ]
    shown_kwargs = {
        str(key): REDACTED if is_secret(key, extra) else _shown(val, limit, extra)
        for key, val in kwargs.items()
    }
    if REDACTED in shown_args or REDACTED in shown_kwargs.values():  # secrets by name
        hide([args[i] for i in range(first, min(len(args), len(secret))) if secret[i]])
        hide([value for key, value in kwargs.items() if is_secret(key, extra)])
    return shown_args, shown_kwargs


# The values of arguments recorded as [REDACTED] in this process (as their reprs and text
# show them), the latest _MAX_HIDDEN: what an exception or a log event says is cleaned of
# them too, since a message may quote a secret without the name it was passed by
# ("rejected key 'sk_live_...'").
hidden: tuple[str, ...] = ()
_MAX_HIDDEN = 128
_MAX_FORM = 4096  # a longer value is not looked for


def hide(values: list[Any]) -> None:
    """Add the text forms of secret argument ``values`` to ``hidden`` (a value's repr before
    its text, the latest first); the same secret passed call after call costs a lookup."""
    global hidden
    forms = [form for value in values for form in forms_of(value) if len(form) <= _MAX_FORM]
    if forms and not all(form in _hidden_set for form in forms):
        new = dict.fromkeys(forms)
        hidden = (*new, *(form for form in hidden if form not in new))[:_MAX_HIDDEN]
        _hidden_set.clear()
        _hidden_set.update(hidden)


_hidden_set: set[str] = set()


def hide_known(text: str) -> str:
    """``text`` with every value in ``hidden`` replaced by ``[REDACTED]``."""
    for form in hidden:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


class Described(Protocol):
    """What a plan of many calls of one function knows of its arguments, worked out once
    (``_child/tasks.py``'s pool task plans, ``_child/announced.py``'s Dask task plans)."""

    record_args: bool
    secret: tuple[bool, ...]
    secret_any: bool
    skip_self: bool
    limit: int
    extra: tuple[str, ...]


NO_KWARGS: dict[str, str] = {}


def describe_planned(
    plan: Described, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[list[str] | None, dict[str, str]]:
    """One call's arguments as its plan records them: None when it records none."""
    if not plan.record_args:
        return None, NO_KWARGS
    if not kwargs and not plan.secret_any and not plan.skip_self:
        return describe_plain(args, plan.limit, plan.extra), NO_KWARGS
    return describe_as(plan.secret, plan.skip_self, args, kwargs, plan.limit, plan.extra)
