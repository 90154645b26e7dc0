"""Trace and span ids, and the W3C ``traceparent`` form they travel in."""

from __future__ import annotations

import random


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


def parse_traceparent(value: str) -> tuple[str, str] | None:
    """``(trace_id, span_id)`` from a W3C ``traceparent``, or None if malformed."""
    parts = value.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id = int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None
    if trace_id == 0 or span_id == 0:
        return None
    return parts[1], parts[2]


def traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"
