"""The writer's side of the ring (``_core.ring``): a worker's busiest records in shared memory.

Created at a process's first pool task (``wire.task_ring``) or the first record that goes
into one, handed to the collector with a ``ring`` record, and written from the start. A
record that does not fit (the collector is behind, or it is bigger than the ring) goes over
the socket instead: the ring never blocks the program, and never drops a record. Its slot
holds the span of the pool task running now (``hold``, ``free``).
"""

from __future__ import annotations

import binascii
import mmap
import os

from .._core import ring as _fmt

_CRC = _fmt.KIND_CRC
# Bound once: put() runs for every pool task.
_crc32, _pack_into = binascii.crc32, _fmt.FRAME.pack_into
_HEADER, _WRAP, _REFUSED, _ATTACHED_AT = _fmt.HEADER, _fmt.WRAP, _fmt.REFUSED, _fmt.OFF_ATTACHED
_WORD_READ, _WORD_WRITE = _fmt.WORD_READ, _fmt.WORD_WRITE
_SLOT_AT, _SLOT_ROOM = _HEADER + 8, _fmt.SLOT - 8  # the message, after the data area's end


class Writer:
    """A ring this process writes (its own: a fork child of it makes its own)."""

    __slots__ = ("capacity", "fd", "held", "mm", "pos", "slot", "words")

    def __init__(self, fd: int, mm: mmap.mmap, capacity: int) -> None:
        self.fd = fd  # handed to the collector once, then closed (the mapping stays)
        self.mm = mm
        self.words = memoryview(mm)[: _fmt.HEADER].cast("Q")  # the positions, whole words
        self.capacity = capacity
        self.pos = 0
        self.slot = memoryview(mm)[_HEADER + capacity : _HEADER + capacity + 8].cast("Q")
        self.held = False  # the slot holds a running task's span

    def hold(self, span: bytes) -> bool:
        """Put a task's span, as it would be sent, in the slot while the task runs (see
        ``_core.ring``), in place of whatever it held (a task inside a task takes it over; a
        task interrupted before it could let go is over); False when it is too big."""
        n = len(span)
        self.free()
        if n > _SLOT_ROOM:
            return False
        at = _SLOT_AT + self.capacity
        self.held = True  # first: an interruption below still lets the slot go at free()
        try:
            self.mm[at : at + n] = span
            self.slot[0] = n  # last: the collector takes only a whole message
        except ValueError:  # closed by another thread meanwhile (a new connection)
            self.held = False
            return False
        return True

    def free(self) -> None:
        """The task ended: the slot is let go of (before its span is sent)."""
        if self.held:
            self.held = False
            try:
                self.slot[0] = 0
            except ValueError:  # pragma: no cover - closed meanwhile (a new connection)
                pass

    def put(self, kind: int, body: bytes | bytearray) -> bool:
        """Copy in one record (``kind``: ``LINE`` or ``SPAN``) and publish it; False when the
        ring has no room or the collector refused it (send it over the socket). Used from the
        start, before the collector has read the ring: a worker never waits for a collector
        still starting (about 0.2 s here)."""
        mm = self.mm
        if mm[_ATTACHED_AT] == _REFUSED:
            return False
        length = len(body) + 1
        size = (length + 15) & ~7  # _fmt.padded(length), without the call
        cap = self.capacity
        pos = self.pos
        free = cap - (pos - self.words[_WORD_READ])
        if free > cap or free < 0:  # not a position the collector can have written
            return False
        off = pos % cap
        if off + size > cap:  # no room before the end: the record starts again at 0
            if cap - off + size > free:
                return False
            _pack_into(mm, _HEADER + off, _WRAP, 0)
            pos += cap - off
            off = 0
        elif size > free:
            return False
        at = _HEADER + off
        _pack_into(mm, at, length, _crc32(body, _CRC[kind]))
        mm[at + 8] = kind
        mm[at + 9 : at + 8 + length] = body
        pos += size
        self.words[_WORD_WRITE] = pos  # published: after the copy
        self.pos = pos
        return True

    def close(self) -> None:
        try:
            self.slot[0] = 0  # a task running now ends on the next ring, if at all
            self.held = False
            self.slot.release()
            self.words.release()
            self.mm.close()
        except (BufferError, ValueError):  # pragma: no cover - still exported, or closed
            pass
        self.give_fd()

    def give_fd(self) -> None:
        """Close this process's descriptor of the ring (the collector has its own now)."""
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:  # pragma: no cover
                pass
            self.fd = -1


def create(capacity: int = _fmt.CAPACITY) -> Writer | None:
    """A new ring, or None where there is no ``memfd_create`` (not Linux) or no memory."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is None:
        return None
    fd = -1
    try:
        fd = memfd_create("proctrace-ring", os.MFD_CLOEXEC)
        os.ftruncate(fd, _fmt.HEADER + capacity + _fmt.SLOT)
        mm = mmap.mmap(fd, _fmt.HEADER + capacity + _fmt.SLOT)
    except OSError:
        if fd >= 0:
            os.close(fd)
        return None
    mm[0:8] = _fmt.MAGIC
    _fmt.U64.pack_into(mm, _fmt.OFF_CAPACITY, capacity)
    _fmt.U64.pack_into(mm, _fmt.OFF_SLOT, _fmt.SLOT)
    return Writer(fd, mm, capacity)
