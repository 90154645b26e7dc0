"""The record protocol: every record a process sends the collector, typed, and its one check.

Each process writes newline-delimited JSON objects to the run's socket; the
key ``k`` says which record it is. The collector passes every line through
``parse`` before anything else reads it, so the rest of the agent can trust
the shapes below: ids are lowercase hex of the right length, times are ints,
attributes are string-keyed mappings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Literal, NotRequired, TypedDict, cast, final

# A span event as it travels: [name, time in ns, attributes].
Event = tuple[str, int, dict[str, Any]]
# A span link as it travels: [trace id, span id, attributes].
Link = tuple[str, str, dict[str, Any]]


class StartRecord(TypedDict):
    """A process span opened in the child (``announce=True`` spans)."""

    k: Literal["start"]
    trace: str
    span: str
    parent: str | None
    name: str
    start: int
    attrs: dict[str, Any]
    t: NotRequired[bool]  # a task's span (Dask): no process fate, not held for an exit code
    links: NotRequired[list[Link]]  # a Dask task's earlier attempt
    p: NotRequired[bool]  # a fork child's process span, opened by its starter before the fork
    q: NotRequired[bool]  # with p: SIGTERM from the starter is a normal end (pool workers)


class EndRecord(TypedDict):
    """The end of a span its process opened with a start record."""

    k: Literal["end"]
    span: str
    end: int
    status: int
    message: str
    attrs: dict[str, Any]
    events: list[Event]


class SpanRecord(TypedDict):
    """A finished span in one piece (pool tasks, direct calls, application spans)."""

    k: Literal["span"]
    trace: str
    span: str
    parent: str | None
    name: str
    start: int
    end: int
    status: int
    message: str
    attrs: dict[str, Any]
    events: list[Event]
    d: NotRequired[bool]  # the connection's shared attributes apply
    kind: NotRequired[int]  # SDK SpanKind value; INTERNAL (0) when absent
    links: NotRequired[list[Link]]
    scope: NotRequired[str | None]  # instrumentation scope; proctrace's when absent


class EncodedRecord(TypedDict):
    """A finished span already written as an OTLP ``Span`` message, in hex (pool tasks): the
    agent checks it and forwards it as it is (``_otlp.encoded``)."""

    k: Literal["pb"]
    b: str


# An EncodedRecord as processes write it is this, the hex, and ENCODED_END: the collector
# takes the hex straight out of a line of that form (one per pool task) without the JSON
# decoder, and parses any other form of it like every record.
ENCODED_START = b'{"k":"pb","b":"'
ENCODED_END = b'"}'


class DefaultsRecord(TypedDict):
    """Attributes shared by this connection's ``span`` records that carry ``d``."""

    k: Literal["defaults"]
    attrs: dict[str, Any]


class ExpectRecord(TypedDict):
    """The starter's announcement of a child's process span, sent once ``start()`` worked."""

    k: Literal["expect"]
    trace: str
    span: str
    parent: str | None
    name: str
    start: int
    quiet_term: bool  # SIGTERM from the starter is a normal end (pool workers)
    attrs: dict[str, Any]


class ReportRecord(TypedDict):
    """The starter's report: the signal it sends a child, the exit code it reaped, or (``pid``,
    the value the child's pid) that a fork child whose span it opened exists."""

    k: Literal["signal", "exited", "pid", "exec"]
    span: str
    value: int
    pid: NotRequired[int]  # the child's
    at: NotRequired[int]  # exited: when join() reaped it (ns since the epoch): it ended before


class RingRecord(TypedDict):
    """A ring (``_core.ring``) for this connection's busiest records: its descriptor comes with
    this record (``SCM_RIGHTS``)."""

    k: Literal["ring"]


class ShutdownRecord(TypedDict):
    """The traced program is exiting: drain and stop."""

    k: Literal["shutdown"]


WireRecord = (
    StartRecord
    | EndRecord
    | SpanRecord
    | EncodedRecord
    | DefaultsRecord
    | ExpectRecord
    | ReportRecord
    | RingRecord
    | ShutdownRecord
)


@final  # so that ``"encoded" in record`` tells the two apart (type checkers narrow on it)
class SpanData(TypedDict):
    """A span as the collector keeps and hands it to export: a finished start+end, a ``span``
    record, or an announcement the collector had to end itself."""

    trace: str
    span: str
    parent: str | None
    name: str
    start: int
    end: NotRequired[int]
    status: NotRequired[int]
    message: NotRequired[str]
    attrs: dict[str, Any]
    events: NotRequired[list[Event]]
    kind: NotRequired[int]
    links: NotRequired[list[Link]]
    scope: NotRequired[str | None]
    process: NotRequired[bool]  # a process span (its starter announced it)
    quiet_term: NotRequired[bool]


@final
class EncodedSpan(TypedDict):
    """A finished span the collector got already encoded (a ``pb`` record, checked): OTLP
    destinations send the bytes as they are; the others decode them (``_otlp.encoded``)."""

    trace: str
    span: str
    encoded: bytes


# What the collector hands to export.
Finished = SpanData | EncodedSpan


class RecordError(ValueError):
    """A line from the socket that is not a record of the protocol."""


_INT64 = 2**63
_ID16 = re.compile("[0-9a-f]{16}").fullmatch
_ID32 = re.compile("[0-9a-f]{32}").fullmatch

# The checks, one function per kind of field: the collector runs them on every line.


def _id16(value: object) -> bool:
    return type(value) is str and _ID16(value) is not None


def _id32(value: object) -> bool:
    return type(value) is str and _ID32(value) is not None


def _opt_id16(value: object) -> bool:
    return value is None or value == "" or _id16(value)


def _int(value: object) -> bool:
    return type(value) is int and -_INT64 <= value < 2 * _INT64


def _str(value: object) -> bool:
    return isinstance(value, str)


def _opt_str(value: object) -> bool:
    return value is None or isinstance(value, str)


def _bool(value: object) -> bool:
    return isinstance(value, bool | int)


def _attrs(value: object) -> bool:
    return isinstance(value, dict) and all(type(k) is str for k in value)


def _events(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(e, list | tuple) and len(e) == 3 and isinstance(e[0], str)
        and _int(e[1]) and _attrs(e[2])
        for e in value
    )


def _links(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(e, list | tuple) and len(e) == 3 and _id32(e[0]) and _id16(e[1])
        and _attrs(e[2])
        for e in value
    )


Check = Callable[[object], bool]
_FIELDS: dict[str, tuple[tuple[str, Check], ...]] = {
    "start": (
        ("trace", _id32), ("span", _id16), ("parent", _opt_id16), ("name", _str),
        ("start", _int), ("attrs", _attrs),
    ),
    "end": (
        ("span", _id16), ("end", _int), ("status", _int), ("message", _str), ("attrs", _attrs),
        ("events", _events),
    ),
    "span": (
        ("trace", _id32), ("span", _id16), ("parent", _opt_id16), ("name", _str),
        ("start", _int), ("end", _int), ("status", _int), ("message", _str),
        ("attrs", _attrs), ("events", _events),
    ),
    "pb": (("b", _str),),
    "defaults": (("attrs", _attrs),),
    "expect": (
        ("trace", _id32), ("span", _id16), ("parent", _opt_id16), ("name", _str),
        ("start", _int), ("quiet_term", _bool), ("attrs", _attrs),
    ),
    "signal": (("span", _id16), ("value", _int)),
    "exited": (("span", _id16), ("value", _int)),
    "pid": (("span", _id16), ("value", _int)),
    "exec": (("span", _id16), ("value", _int)),
    "ring": (),
    "shutdown": (),
}
_OPTIONAL: dict[str, tuple[tuple[str, Check], ...]] = {
    "start": (("t", _bool), ("links", _links), ("p", _bool), ("q", _bool)),
    "signal": (("pid", _int),),
    "exited": (("pid", _int), ("at", _int)),
    "span": (("d", _bool), ("kind", _int), ("links", _links), ("scope", _opt_str)),
}


def validate(obj: object) -> WireRecord:
    """``obj`` as a record of the protocol, or RecordError saying what is wrong."""
    if not isinstance(obj, dict):
        raise RecordError("not a JSON object")
    kind = obj.get("k")
    fields = _FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None or not isinstance(kind, str):
        raise RecordError(f"unknown record kind {kind!r}")
    for key, ok in fields:
        if key not in obj:
            raise RecordError(f"{kind} record: no {key!r}")
        if not ok(obj[key]):
            raise RecordError(f"{kind} record: bad {key!r}")
    for key, ok in _OPTIONAL.get(kind, ()):
        if key in obj and not ok(obj[key]):
            raise RecordError(f"{kind} record: bad {key!r}")
    return cast(WireRecord, obj)


_DECODER = json.JSONDecoder()


def parse(line: bytes) -> WireRecord:
    """One line from the socket as a checked record; RecordError if it is not one. Records
    are UTF-8 (JSON's own encoding; proctrace writes them ASCII-only)."""
    try:
        obj = _DECODER.decode(line.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError) as exc:
        raise RecordError(f"not JSON: {exc}") from None
    return validate(obj)
