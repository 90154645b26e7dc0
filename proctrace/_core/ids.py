"""Trace and span ids, and the W3C ``traceparent`` form they travel in."""

from __future__ import annotations

import os
import random
from typing import NamedTuple

# This process's pid, kept up to date across os.fork(): os.getpid() is a system call, and
# a pool task would otherwise make two.
_pid = [os.getpid()]


def _forked() -> None:
    _pid[0] = os.getpid()


os.register_at_fork(after_in_child=_forked)


def pid() -> int:
    """``os.getpid()`` without the system call."""
    return _pid[0]


class SpanRef(NamedTuple):
    """A span to nest under: its ids, and whether its trace is sampled."""

    trace_id: str
    span_id: str
    sampled: bool = True


def new_id(nbytes: int) -> str:
    """A random non-zero id as lowercase hex (W3C trace context form).

    ``random`` is reseeded from the OS in every fork child (CPython does that at
    fork), so ids do not repeat across processes; it is many times cheaper than
    ``os.urandom``, a system call per id.
    """
    bits = nbytes * 8
    while True:
        value = random.getrandbits(bits)
        if value:
            return format(value, f"0{nbytes * 2}x")


_HEX = frozenset("0123456789abcdef")


def parse_traceparent(value: str) -> SpanRef | None:
    """The span a W3C ``traceparent`` names, with its ``sampled`` flag; None if malformed."""
    parts = value.strip().split("-") if isinstance(value, str) else ()
    if len(parts) < 4 or len(parts[0]) != 2 or len(parts[3]) != 2:
        return None
    version, trace_id, span_id, flags = parts[0], parts[1], parts[2], parts[3]
    if len(trace_id) != 32 or len(span_id) != 16 or version == "ff":
        return None
    if version == "00" and len(parts) != 4:
        return None
    if set(version + trace_id + span_id + flags) - _HEX:
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return SpanRef(trace_id, span_id, bool(int(flags, 16) & 1))


def traceparent(trace_id: str, span_id: str, sampled: bool = True) -> str:
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
