"""Records out of a stream: one a line, in time linear in what arrived.

A connection's bytes arrive 64 KiB at a time. Joining each read to the unfinished line
before it and splitting the whole again copied a long line once per read: a 40 MB end
record (a child that logged a big value) took the agent 9 s, while the program waited for
it at its exit. Here the pieces of an unfinished line are kept apart and joined once, when
its newline arrives. A line longer than ``limit`` is no record: it is dropped as it
arrives, so one bad peer cannot exhaust the agent's memory.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._core.records import SpanData
    from . import rings as _rings

# The longest line a process may send (a record): a process span with 128 log events of
# the longest reprs is far below; more is dropped, so one bad peer cannot exhaust memory.
MAX_LINE = 16 << 20


class Lines:
    """The unfinished line of one connection."""

    __slots__ = ("dropped", "limit", "parts", "size", "skipping")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.skipping = False  # inside a line over the limit: its rest is dropped too
        self.dropped = 0  # lines dropped for their length

    def feed(self, data: bytes) -> list[bytes]:
        """The lines ``data`` completes, without their newlines."""
        if b"\n" not in data:
            if data and not self.skipping:
                self._keep(data)
            return []
        lines = data.split(b"\n")
        tail = lines.pop()
        if self.skipping:  # the first piece ends the line being dropped
            del lines[0]
            self.skipping = False
        elif self.parts:
            if self.size + len(lines[0]) > self.limit:
                del lines[0]
                self.dropped += 1
            else:
                lines[0] = b"".join(self.parts) + lines[0]
        self.parts, self.size = [], 0
        if tail:
            self._keep(tail)
        return [line for line in lines if len(line) <= self.limit or self._drop()]

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.parts, self.size, self.skipping = [], 0, True
            self.dropped += 1
        else:
            self.parts.append(data)

    def _drop(self) -> bool:
        self.dropped += 1
        return False


class Connection:
    """What the collector keeps of one process's connection."""

    __slots__ = ("defaults", "fds", "lines", "open", "ring")

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.lines = Lines(limit)
        self.open: dict[str, SpanData] = {}  # its spans started and not ended yet
        self.defaults: dict[str, Any] = {}
        self.fds: list[int] = []  # descriptors received, for the ring records to come
        self.ring: _rings.Reader | None = None

    def close_fds(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:  # pragma: no cover
                pass
        self.fds.clear()
