"""Trace and span ids, and the W3C ``traceparent`` form they travel in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, NamedTuple

# This process's pid, kept up to date across os.fork(): os.getpid() is a system call, and
# a pool task would otherwise make two.
_pid = [os.getpid()]
# Random ids are cut from os.urandom 4096 bytes at a time, as 16 hex digits each: one
# system call per 512 ids, and no ``random`` module (its own fork handler would reseed it
# in every fork child). ``next()`` on the list iterator is atomic under the GIL: no two
# threads get the same one.
_words: Iterator[str] = iter(())
_words_pid = 0  # the process they were drawn in: a fork child's are its parent's, not its own
_ZERO = "0" * 16


def _forked() -> None:
    _pid[0] = os.getpid()


os.register_at_fork(after_in_child=_forked)


# The run's main-process span once it is open (a ``_child.span.Span``), with that process's
# pid: where the main program's ``logging`` records nest when no span is current there.
main: tuple[Any, int] | None = None


def main_span() -> Any:
    """The run's main-process span, in the main program once it is open; else None."""
    found = main
    return found[0] if found is not None and found[1] == _pid[0] else None


def pid() -> int:
    """``os.getpid()`` without the system call."""
    return _pid[0]


class SpanRef(NamedTuple):
    """A span to nest under: its ids, and whether its trace is sampled."""

    trace_id: str
    span_id: str
    sampled: bool = True


def _word() -> str:
    """16 random hex digits, not all zero."""
    global _words, _words_pid
    if _words_pid == _pid[0]:
        for word in _words:
            if word != _ZERO:
                return word
    # Not dropped at the fork: freeing the parent's 512 words would cost a fork child pages.
    _words_pid = _pid[0]
    text = os.urandom(4096).hex()
    _words = iter([text[i : i + 16] for i in range(0, len(text), 16)])
    return _word()


def new_id(nbytes: int) -> str:
    """A random non-zero id of ``nbytes`` (8, or up to 16) as lowercase hex (the W3C trace
    context form), from the operating system's random source."""
    if nbytes == 8:
        return _word()
    while True:
        text = (_word() + _word())[: nbytes * 2]
        if text.strip("0"):
            return text


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
