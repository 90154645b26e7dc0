"""Bounded reprs: the start of ``repr(value)``, at a cost set by its length, not the value's size.

``head(value, n)`` is exactly ``repr(value)``, or a prefix of it at least ``n`` characters long.
It writes the reprs of ``str``, ``bytes``, ``bytearray``, ``list``, ``tuple``, ``dict``,
``set`` and ``frozenset`` (those exact types, nested) itself and stops once it has ``n``
characters: a 50 MB ``bytes`` cost 0.7 s and 150 MB of memory to repr before the cut, a
dict of a million items 0.35 s. A string's quotes depend on all of it (``repr`` picks
``"`` when the text holds ``'`` but no ``"``): that is looked up with ``find`` (memchr,
about 2 ms for 50 MB), so the text stays repr's own. Other objects are shown by their own
``repr``, which cannot be bounded from outside; a ``Rendered`` stand-in writes itself.
"""

from __future__ import annotations

from typing import Any

_ATOMS = frozenset({int, float, bool, type(None)})
_CONTAINERS = frozenset({list, tuple, set, frozenset})
_SMALL = 256  # a container of at most this many atoms and short strings (nested): one C repr
_SHORT = 64
_DEEP = 48  # containers nested deeper than this are left to repr (its own recursion limit)


class _Full(Exception):
    """The text has the characters asked for."""


class Out:
    """The text written so far, and how many more characters are wanted."""

    __slots__ = ("active", "left", "parts")

    def __init__(self, wanted: int) -> None:
        self.parts: list[str] = []
        self.left = wanted
        self.active: set[int] = set()  # containers being written, as repr's recursion guard

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.left -= len(text)
        if self.left <= 0:
            raise _Full


class Rendered:
    """A stand-in that writes its own text into an ``Out`` (and so stays bounded)."""

    __slots__ = ()

    def render(self, out: Out) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        out = Out(1 << 62)
        self.render(out)
        return "".join(out.parts)


def head(value: object, wanted: int) -> str:
    """``repr(value)``, or a prefix of it of at least ``wanted`` characters; raises what
    ``repr`` raises on the part written."""
    kind = type(value)
    if kind in _ATOMS:
        return repr(value)
    if kind is str or kind is bytes or kind is bytearray:
        return _quoted(value, wanted)
    if (kind in _CONTAINERS or kind is dict) and _small(value):
        return repr(value)  # the common small argument: no Out
    out = Out(wanted)
    try:
        render(value, out)
    except _Full:
        pass
    return "".join(out.parts)


def bounded(value: object, limit: int) -> str:
    """``repr(value)`` cut to ``limit`` characters; never raises. Only the start of the repr
    of strings, bytes and builtin containers is made (``head``)."""
    try:
        short = type(value) is str and len(value) < limit
        text = repr(value) if short else head(value, limit + 1)  # a short one at once
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        try:
            kind = type(value).__name__
        except Exception:  # pragma: no cover - type() always works on CPython
            kind = "object"
        return f"<unrepresentable {kind}: {type(exc).__name__}>"
    if len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def render(value: Any, out: Out) -> None:
    """Write ``repr(value)`` into ``out`` (``_Full`` once it has enough)."""
    kind = type(value)
    if kind in _ATOMS:
        out.add(repr(value))
    elif kind is str or kind is bytes or kind is bytearray:
        out.add(_quoted(value, out.left))
    elif kind is list:
        _items(value, "[", "]", "[...]", out)
    elif kind is tuple:
        closing = ",)" if len(value) == 1 else ")"
        _items(value, "(", closing, "(...)", out)
    elif kind is dict:
        _mapping(value, out)
    elif kind is set:
        _items(value, "{", "}", "set(...)", out, "set()")
    elif kind is frozenset:
        _items(value, "frozenset({", "})", "frozenset(...)", out, "frozenset()")
    elif isinstance(value, Rendered):
        value.render(out)
    else:
        out.add(repr(value))


def _quoted(value: Any, wanted: int) -> str:
    """The repr of a str, bytes or bytearray, or its first ``wanted`` characters or more."""
    if len(value) <= wanted:
        return repr(value)
    kind = type(value)
    part = value[:wanted]  # each character or byte shows as one character or more
    single, double = ("'", '"') if kind is str else (b"'", b'"')
    has_single = single in part or value.find(single, wanted) >= 0
    has_double = has_single and (double in part or value.find(double, wanted) >= 0)
    at, end = (0, -1) if kind is str else (1, -1) if kind is bytes else (11, -2)
    quote = '"' if has_single and not has_double else "'"  # as repr chooses, on all of it
    text = repr(part)
    if text[at] == quote or quote == '"':  # the same quotes, or none inside the part
        return text[:at] + quote + text[at + 1 : end]
    # the part has ' but no ", so repr quoted it with ", all of it (a " further on) with ':
    # with a " added the part is quoted with ' too, and the " is dropped with the last quote
    return repr(part + double)[: end - 1]


def _fits(values: Any, room: int) -> int:
    """``room`` less the items in ``values``, nested: below 0 when they are more, or when one
    is neither an atom, a short string nor a container of such (its repr may be long)."""
    room -= len(values)
    if room >= 0:
        for v in values:
            kind = type(v)
            if kind in _ATOMS:
                continue
            if kind is str or kind is bytes:
                if len(v) > _SHORT:
                    return -1
            elif kind in _CONTAINERS:
                room = _fits(v, room)
            elif kind is dict:
                room = _fits(v.values(), _fits(v, room))
            else:
                return -1
            if room < 0:
                break
    return room


def _small(value: Any) -> bool:
    """True for a container of a few atoms and short strings: one quick C repr."""
    if type(value) is dict:
        return _fits(value.values(), _fits(value, _SMALL)) >= 0
    return _fits(value, _SMALL) >= 0


def _items(
    value: Any, opening: str, closing: str, again: str, out: Out, empty: str = ""
) -> None:
    if not value:
        out.add(empty or opening + closing)
        return
    key = id(value)
    if key in out.active:
        out.add(again)  # repr's own mark for a container inside itself
        return
    if len(out.active) >= _DEEP or _small(value):
        out.add(repr(value))
        return
    out.active.add(key)
    out.add(opening)
    first = True
    for item in value:
        if first:
            first = False
        else:
            out.add(", ")
        render(item, out)
    out.add(closing)
    out.active.discard(key)


def _mapping(value: dict[Any, Any], out: Out) -> None:
    if not value:
        out.add("{}")
        return
    key = id(value)
    if key in out.active:
        out.add("{...}")
        return
    if len(out.active) >= _DEEP or _small(value):
        out.add(repr(value))
        return
    out.active.add(key)
    out.add("{")
    first = True
    for k, v in value.items():
        if first:
            first = False
        else:
            out.add(", ")
        render(k, out)
        out.add(": ")
        render(v, out)
    out.add("}")
    out.active.discard(key)
