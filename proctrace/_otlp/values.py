"""What both OTLP encodings share: the clean-up of every string and number they write.

OTLP strings must be valid UTF-8 (a lone surrogate from an exception message
would spoil the whole request), ints are int64 (a bigger one travels as its
decimal text), and JSON has no NaN or infinities (the protobuf JSON mapping
spells them as strings). The protobuf writer and the JSON writer both take
every value through here, so a record encodes to the same message either way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Kinds of AnyValue, as ``kind_of`` names them.
STRING, BOOL, INT, DOUBLE, ARRAY, KVLIST, BYTES = range(7)


def text(value: object) -> str:
    """``value`` as text that encodes to valid UTF-8 (lone surrogates become ``?``)."""
    if type(value) is not str:
        value = str(value)
    try:
        value.encode()
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode()
    return value


def utf8(value: object) -> bytes:
    """``text(value)`` encoded."""
    if type(value) is not str:
        value = str(value)
    return value.encode("utf-8", "replace")


def kind_of(value: Any) -> int:
    """Which ``AnyValue`` field ``value`` goes in; anything unknown is its ``str()``."""
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT if INT64_MIN <= value <= INT64_MAX else STRING
    if isinstance(value, float):
        return DOUBLE
    if isinstance(value, str):
        return STRING
    if isinstance(value, list | tuple):
        return ARRAY
    if isinstance(value, Mapping):
        return KVLIST
    if isinstance(value, bytes):
        return BYTES
    return STRING


def json_double(value: float) -> float | str:
    """A double as the protobuf JSON mapping writes it: NaN and infinities as strings."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"
