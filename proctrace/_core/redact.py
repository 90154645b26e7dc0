"""Arguments as safe text: bounded reprs, and secrets replaced before anything is recorded.

Two layers. ``scrub`` replaces secrets structurally: values under secret-looking keys of
mappings, fields of dataclasses, namedtuples and ``SimpleNamespace``, attributes of objects
with a custom repr, the value of a ``(name, value)`` pair. ``redact_text`` then cleans text
(every repr ``safe_repr`` makes): a URL's password, ``Bearer``/``Basic`` tokens, and the value
in ``name=value``, ``name: value``, ``'name': value``, ``('name', value)`` of a secret name.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Mapping
from typing import Any

from .reprs import Out, Rendered, bounded, render

REDACTED = "[REDACTED]"
SECRET_WORDS = ("password", "passwd", "secret", "token", "api_key", "apikey", "authorization",
                "credential", "private_key", "authkey", "auth_key")  # fmt: skip
_MAX_DEPTH = 6
_MAX_ATTRS = 64  # attributes of one object searched
_MAX_STR = 4096  # longer strings are cleaned in their repr only (safe_repr)
_MARGIN = 1024  # text past the cut still cleaned, so a cut cannot part a secret from its name
_EAGER = 256  # items scrubbed at once; a value with more is scrubbed as it is shown (_Scrubbing)
_SECRET_CACHE: dict[tuple[str, tuple[str, ...]], bool] = {}


def is_secret(name: object, extra: tuple[str, ...] = ()) -> bool:
    """True when a key or parameter name looks like it holds a secret (case-insensitive)."""
    if not isinstance(name, str):
        return False
    key = (name, extra)
    found = _SECRET_CACHE.get(key) if type(name) is str else None  # names recur: cached
    if found is None:
        lowered = name.lower().replace("-", "_")
        found = any(w in lowered for w in SECRET_WORDS) or any(w in lowered for w in extra)
        if type(name) is str and len(name) <= 256:
            if len(_SECRET_CACHE) >= 4096:
                _SECRET_CACHE.clear()
            _SECRET_CACHE[key] = found
    return found


# --- text ------------------------------------------------------------------------------------
# scheme://user:PASSWORD@host: the password runs to the last "@" of the whitespace-delimited
# token (a raw "@" in a password is common); "host:443/path@x" is a port, not a password.
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]{0,30}://[^\s:/]*:)(\S*?)@(?=[^\s@]*(?:\s|\Z))")
_PORT = re.compile(r"\d{1,5}[/?#]")
_AUTH = re.compile(r"\b(bearer|basic)([ \t]+)(?!\[REDACTED\])([^\s'\",;)\]}]+)", re.I)
_SCHEME_WORD = re.compile(r"(?:bearer|basic|token|digest|negotiate)[ \t]+(?=\S)", re.I)
_STRING = re.compile(r"""[bBrRuUfF]{0,2}(?:'(?:[^'\\]|\\.?)*'?|"(?:[^"\\]|\\.?)*"?)""", re.S)
_STOP = frozenset(" \t\r\n\f\v,;&)]}'\"")
_QUERY_STOP = frozenset(" \t\r\n\f\v&#'\"")
_TRIGGERS = (*SECRET_WORDS, "api-key", "private-key")
_NAMED: dict[tuple[str, ...], re.Pattern[str]] = {}


def _named(extra: tuple[str, ...]) -> re.Pattern[str]:
    """``name=``, ``name:``, ``'name':`` or ``'name',`` where name holds a secret word."""
    found = _NAMED.get(extra)
    if found is None:
        words = "|".join(re.escape(w).replace("_", "[_-]") for w in SECRET_WORDS + extra if w)
        name = r"[\w.\-]{0,64}(?:" + words + r")[\w.\-]{0,64}"
        found = _NAMED[extra] = re.compile(
            r"(?<![\w.\-])[bB]?(['\"]?)(" + name + r")\1[ \t]*(=|:(?!//)|,)[ \t]*", re.I
        )
    return found


def _url_password(m: re.Match[str]) -> str:
    return m.group(0) if _PORT.match(m.group(2)) else m.group(1) + REDACTED + "@"


def _auth_token(m: re.Match[str]) -> str:
    scheme, token = m.group(1), m.group(3)
    plain_word = token.isalpha() and token[1:].islower()
    if plain_word and (scheme.islower() or scheme.lower() == "basic"):
        return m.group(0)  # prose: "the bearer of", "Basic usage"
    return scheme + m.group(2) + REDACTED


def _value_end(text: str, i: int, query: bool) -> int:
    """Where the value starting at ``text[i]`` ends: a quoted string, or a run up to a
    delimiter outside brackets (the rest of the text when a bracket never closes)."""
    m = _STRING.match(text, i)
    if m is not None:
        return m.end()
    stop = _QUERY_STOP if query else _STOP
    depth, j, n = 0, i, len(text)
    while j < n:
        c = text[j]
        if depth:
            if c in "'\"":
                j = _STRING.match(text, j).end()  # type: ignore[union-attr]
                continue
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
        elif c in stop:
            break
        elif c in "([{":
            depth = 1
        j += 1
    return j


def _redact_named(text: str, extra: tuple[str, ...]) -> str:
    out: list[str] = []
    pos = 0
    for m in _named(extra).finditer(text):
        start = m.start()
        if start < pos or not is_secret(m.group(2), extra):
            continue
        sep, i = m.group(3), m.end()
        if sep == ",":  # ('name', value) or ['name', value]: a pair only
            j = start - 1
            while j >= 0 and text[j] in " \t":
                j -= 1
            if not m.group(1) or j < 0 or text[j] not in "([":
                continue
        scheme = _SCHEME_WORD.match(text, i)
        i = scheme.end() if scheme is not None else i
        if text.startswith(REDACTED, i):
            continue  # already hidden
        end = _value_end(text, i, sep == "=" and start > 0 and text[start - 1] in "?&;")
        if sep == "," and text[end:].lstrip(" \t")[:1] not in (")", "]"):
            continue
        out += (text[pos:i], REDACTED)
        pos = end
    return "".join((*out, text[pos:])) if out else text


def redact_text(text: str, extra: tuple[str, ...] = ()) -> str:
    """``text`` with URL passwords, auth tokens and values of secret-looking names replaced
    by ``[REDACTED]``; ``text`` itself when nothing was found. Idempotent."""
    if "@" in text and "://" in text:
        text = _URL.sub(_url_password, text)
    if "earer" in text or "asic" in text or "EARER" in text or "ASIC" in text:
        text = _AUTH.sub(_auth_token, text)
    if "=" in text or ":" in text or "," in text:
        low = text.lower()
        if any(w in low for w in _TRIGGERS) or any(w.replace("_", "-") in low or w in low
                                                   for w in extra if w):  # fmt: skip
            text = _redact_named(text, extra)
    return text


# --- structure -------------------------------------------------------------------------------
class _Text(Rendered):
    """Stands in for a value: shown as the given text (an object's cleaned repr, a mark)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def render(self, out: Out) -> None:
        out.add(self.text)


_REDACTED = _Text(REDACTED)
_TOO_DEEP = _Text("[...]")


class _Shown(Rendered):
    """Stands in for a dataclass, namedtuple or namespace whose secret fields were replaced."""

    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: dict[str, object]) -> None:
        self.name = name
        self.fields = fields

    def render(self, out: Out) -> None:
        out.add(self.name + "(")
        for i, (key, value) in enumerate(self.fields.items()):
            out.add(f", {key}=" if i else f"{key}=")
            render(value, out)
        out.add(")")


class _Scrubbing(Rendered):
    """Stands in for a list, tuple or dict too large to scrub at once: scrubbed as it is
    shown, so a bounded repr of it searches only the items it shows. Its text is the repr
    of what ``scrub`` would have returned."""

    __slots__ = ("depth", "extra", "value")

    def __init__(self, value: object, extra: tuple[str, ...], depth: int) -> None:
        self.value = value
        self.extra = extra
        self.depth = depth

    def render(self, out: Out) -> None:
        _render_scrubbed(self.value, self.extra, self.depth, out)


def _render_scrubbed(value: Any, extra: tuple[str, ...], depth: int, out: Out) -> None:
    """Write ``repr(scrub(value))``: a dict, list or tuple item by item (as ``scrub`` does
    it, a new one of the same repr), the rest as ``scrub`` returns it."""
    kind = type(value)
    items = kind is list or kind is tuple
    if depth > _MAX_DEPTH or not (kind is dict or items) or not value or (
        items and _is_pair(value, extra)
    ):
        render(_scrub(value, extra, depth, None), out)
        return
    out.add("{" if kind is dict else "[" if kind is list else "(")
    for i, item in enumerate(value.items() if kind is dict else value):
        if i:
            out.add(", ")
        if kind is dict:
            key, item = item
            render(key, out)
            out.add(": ")
            if is_secret(key, extra):
                out.add(REDACTED)
                continue
        _render_scrubbed(item, extra, depth + 1, out)
    out.add("}" if kind is dict else "]" if kind is list else ",)" if len(value) == 1 else ")")


NUMBERS = (int, float, bool, type(None))


def scrub(value: object, extra: tuple[str, ...] = (), depth: int = 0) -> object:
    """Return ``value``, or a stand-in with secret-looking keys, fields and attributes redacted.

    Mappings, dataclass instances, namedtuples, namespaces, lists, tuples and the attributes
    of objects with a custom repr are searched a few levels deep; a pair ``(name, value)``
    with a secret-looking name loses its value; strings get ``redact_text``. The original
    object is returned untouched when nothing was secret. A value holding more than
    ``_EAGER`` items in all gets a stand-in that is scrubbed as it is shown instead, so that
    ``safe_repr`` searches only the part it shows.
    """
    try:
        return _scrub(value, extra, depth, [_EAGER])
    except _TooBig:
        return _Scrubbing(value, extra, depth)


class _TooBig(Exception):
    """More items than ``scrub`` searches at once."""


def _spend(room: list[int] | None, items: int) -> None:
    if room is not None:
        room[0] -= items
        if room[0] < 0:
            raise _TooBig


def _scrub(value: object, extra: tuple[str, ...], depth: int, room: list[int] | None) -> object:
    """``scrub()``, searching at most ``room[0]`` items (``_TooBig`` past that; None: all)."""
    if depth > _MAX_DEPTH:
        return _TOO_DEEP  # not searched, so not shown
    kind = type(value)
    if kind in NUMBERS:
        return value
    if kind.__name__ == "AuthenticationString" and _is_authkey(kind):
        return _REDACTED  # a multiprocessing authkey, whatever it is called (Manager()'s)
    try:
        if kind is str:
            if len(value) > _MAX_STR:  # type: ignore[arg-type]
                return value
            cleaned = redact_text(value, extra)  # type: ignore[arg-type]
            return value if cleaned == value else cleaned
        if isinstance(value, Mapping):
            _spend(room, len(value))
            changed = False
            out: dict[object, object] = {}
            for key, item in value.items():
                new = _REDACTED if is_secret(key, extra) else _scrub(item, extra, depth + 1, room)
                changed = changed or new is not item
                out[key] = new
            return out if changed else value
        dataclasses = sys.modules.get("dataclasses")  # not loaded: no dataclass exists
        if dataclasses and dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.repr}
            return _fields(kind.__qualname__, fields, value, extra, depth, room)
        if isinstance(value, tuple) and isinstance(getattr(kind, "_fields", None), tuple):
            fields = dict(zip(kind._fields, value, strict=False))  # type: ignore[attr-defined]
            return _fields(kind.__name__, fields, value, extra, depth, room)
        if isinstance(value, list | tuple):
            if _is_pair(value, extra):
                if value[1] is _REDACTED:
                    return value
                return [value[0], _REDACTED] if isinstance(value, list) else (value[0], _REDACTED)
            _spend(room, len(value))
            items = [_scrub(item, extra, depth + 1, room) for item in value]
            if any(new is not old for new, old in zip(items, value, strict=True)):
                return items if isinstance(value, list) else tuple(items)
            return value
        if isinstance(value, types.SimpleNamespace) and kind.__repr__ is _NS_REPR:
            name = "namespace" if kind is types.SimpleNamespace else kind.__name__
            return _fields(name, dict(vars(value)), value, extra, depth, room)
        return _attributes(value, kind, extra, depth, room)
    except _TooBig:
        raise
    except Exception:  # a hostile __eq__, items() or property: keep the original
        return value


def _is_pair(value: list[Any] | tuple[Any, ...], extra: tuple[str, ...]) -> bool:
    """``("Authorization", "Bearer x")``: a name that looks secret, and its value."""
    name = value[0] if len(value) == 2 else None
    return type(name) is str and _is_name(name) is not None and is_secret(name, extra)


def _is_authkey(kind: type) -> bool:
    """``multiprocessing``'s AuthenticationString: whoever holds it can run code in a Manager."""
    process = sys.modules.get("multiprocessing.process")
    return process is not None and kind is getattr(process, "AuthenticationString", None)


_NS_REPR = types.SimpleNamespace.__repr__
_is_name = re.compile(r"[\w.\-]{1,64}").fullmatch  # ("Authorization", "Bearer x"): a pair


def _fields(
    name: str, fields: dict[str, Any], value: object, extra: Any, depth: int,
    room: list[int] | None,
) -> object:
    _spend(room, len(fields))
    shown = {k: _REDACTED if is_secret(k, extra) else _scrub(v, extra, depth + 1, room)
             for k, v in fields.items()}  # fmt: skip
    if any(shown[k] is not fields[k] for k in fields):
        return _Shown(name, shown)
    return value


def _attributes(
    value: object, kind: type, extra: tuple[str, ...], depth: int, room: list[int] | None
) -> object:
    """An object whose custom repr may show its attributes: the repr text, with the reprs
    of secret attributes' values replaced (named or not) and those of scrubbed ones swapped."""
    default = kind.__repr__ is object.__repr__  # type: ignore[comparison-overlap]
    if default or isinstance(value, type | types.ModuleType):
        return value  # the default repr shows no attribute
    attrs = getattr(value, "__dict__", None)
    if type(attrs) is not dict or not attrs:
        return value
    hidden: list[object] = []
    swapped: list[tuple[object, object]] = []
    _spend(room, min(len(attrs), _MAX_ATTRS))
    for name, item in list(attrs.items())[:_MAX_ATTRS]:
        if is_secret(name, extra):
            hidden.append(item)
        else:
            new = _scrub(item, extra, depth + 1, room)
            if new is not item:
                swapped.append((item, new))
    if not hidden and not swapped:
        return value
    text = repr(value)
    for item, new in swapped:
        text = text.replace(repr(item), repr(new))
    for item in hidden:
        for form in forms_of(item):
            text = text.replace(form, REDACTED)
    return _Text(text)


def forms_of(item: object) -> list[str]:
    """How a secret value may appear in a repr (long enough not to hit unrelated text)."""
    if item is None or isinstance(item, bool):
        return []
    forms = [repr(item)]
    if isinstance(item, str):
        forms.append(item)
    elif not isinstance(item, bytes | int | float) and len(forms[0]) < 8:
        return []
    return [f for f in forms if len(f) >= 4]


def safe_repr(value: object, limit: int, extra: tuple[str, ...] = ()) -> str:
    """``repr(value)`` cleaned and cut as ``cleaned_text`` does; never raises."""
    text = bounded(value, limit + _MARGIN)
    if text.endswith("…") and len(text) == limit + _MARGIN:
        text = text[:-1]  # cut by bounded() where cleaned_text cuts
    return cleaned_text(text, limit, extra)


def cleaned_text(text: str, limit: int, extra: tuple[str, ...] = ()) -> str:
    """``text`` with ``redact_text`` applied, cut to ``limit`` characters (ending in ``…``).
    It is cleaned before the cut (so a cut does not part a secret from its name), and no
    more of it than the cut needs: a long text costs what the limit does."""
    cut = text[: limit + _MARGIN]
    clean = redact_text(cut, extra)
    return clean if len(clean) <= limit and len(cut) == len(text) else clean[: limit - 1] + "…"
