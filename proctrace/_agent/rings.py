"""The collector's side of a ring (``_core.ring``): the records a process wrote into it.

A ring arrives as a descriptor with the ``ring`` record on its process's connection; the
collector maps it and takes what was published (from the first record: the writer does
not wait for it) on every turn of its loop, and all of it once the connection ends. A ring
it cannot map (out of memory) it marks refused, and the writer goes back to the socket:
what the writer had put in it by then is lost. A ring that
breaks the format (a position out of range, a length that does not fit) is dropped, like
a malformed record: its writer's later records in it are lost, and counted.
"""

from __future__ import annotations

import binascii
import mmap
import os
import stat

from .._core import ring as _fmt


class Pace:
    """How long the collector's loop waits at most while rings are open (it reads them every
    turn): from FAST while they fill fast (BUSY records or more in a turn; a ring holds
    about 3,000 task spans) to SLOW while they are quiet (fewer than QUIET: idle pool
    workers, Dask tasks of a few ms), halving or doubling turn by turn. Always 5 ms apart,
    two idle pool workers' rings cost the agent 16 ms of CPU a second here, and each Dask
    task about 100 µs of it."""

    FAST, SLOW = 0.005, 0.05
    BUSY, QUIET = 256, 32
    BURST, BURST_QUIET, FEW = 0.002, 0.01, 8

    __slots__ = ("delivered", "pause", "turn")

    def __init__(self) -> None:
        self.turn = self.FAST
        self.pause = self.BURST
        self.delivered = 0

    def rest(self, delivered: int, in_process: bool) -> float:
        """How long the loop sleeps after a turn that read something (``delivered``: the
        collector's count of spans so far). While records flow they are read in bursts: a
        collector asleep in select() is woken by every single send, which costs each sender
        far more than the send. BURST while spans come fast; doubling up to BURST_QUIET
        while turns bring fewer than FEW (fork children a few ms apart, whose few records
        come at several moments of their lives: agent CPU per child 0.63-0.77 ms always at
        BURST, 0.33 with this). Never more than BURST in the program's own process, whose
        join() waits for its spans."""
        came, self.delivered = delivered - self.delivered, delivered
        if in_process or came >= self.FEW:
            self.pause = self.BURST
        else:
            self.pause = min(self.BURST_QUIET, self.pause * 2)
        return self.pause

    def took(self, records: int) -> None:
        """The last turn read ``records`` records from the rings."""
        if records >= self.BUSY:
            self.turn = max(self.FAST, self.turn / 2)
        elif records < self.QUIET:
            self.turn = min(self.SLOW, self.turn * 2)


_crc32, _KIND_CRC = binascii.crc32, _fmt.KIND_CRC


class RingError(ValueError):
    """A descriptor that is not a ring, or a ring whose contents break the format."""


class Reader:
    """One process's ring, mapped in the collector."""

    __slots__ = ("broken", "capacity", "mm", "read", "slot", "words")

    def __init__(self, fd: int) -> None:
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size <= _fmt.HEADER:
                raise RingError("not a ring: not a regular file of its size")
            try:
                mm = mmap.mmap(fd, info.st_size)
            except OSError as exc:  # out of memory, say: the writer goes back to the socket
                if os.pread(fd, 8, 0) == _fmt.MAGIC:
                    os.pwrite(fd, bytes([_fmt.REFUSED]), _fmt.OFF_ATTACHED)
                raise RingError(f"ring refused: {exc}") from None
        except OSError as exc:
            raise RingError(f"not a ring: {exc}") from None
        finally:
            os.close(fd)
        capacity = _fmt.U64.unpack_from(mm, _fmt.OFF_CAPACITY)[0]
        slot = _fmt.U64.unpack_from(mm, _fmt.OFF_SLOT)[0]
        if (
            mm[0:8] != _fmt.MAGIC
            or slot not in (0, _fmt.SLOT)
            or capacity != info.st_size - _fmt.HEADER - slot
            or capacity % 8
        ):
            mm.close()
            raise RingError("not a ring: header")
        self.slot = slot
        self.mm = mm
        self.words = memoryview(mm)[: _fmt.HEADER].cast("Q")  # the positions, whole words
        self.capacity = capacity
        self.read = self.words[_fmt.WORD_READ]
        self.broken = False
        mm[_fmt.OFF_ATTACHED] = _fmt.ATTACHED

    def take(self, final: bool = False) -> tuple[list[tuple[int, bytes]], int]:
        """The records published since the last call, as (kind, record), and how many were
        refused (a CRC that does not match once the writer is gone: ``final``)."""
        if self.broken:
            return [], 0
        mm, cap = self.mm, self.capacity
        write = self.words[_fmt.WORD_WRITE]
        read = self.read
        if write == read:
            return [], 0
        out: list[tuple[int, bytes]] = []
        refused = 0
        if write < read or write - read > cap:
            self.broken = True
            return out, 1
        unpack, header, wrap, crc32 = _fmt.FRAME.unpack_from, _fmt.HEADER, _fmt.WRAP, _crc32
        while read < write:
            off = read % cap
            length, crc = unpack(mm, header + off)
            if length == wrap:
                read += cap - off
                continue
            size = (length + 15) & ~7  # _fmt.padded(length), without the call
            if length < 1 or off + size > cap or read + size > write:
                self.broken = True
                refused += 1
                break
            at = header + off + 8  # the kind byte, then the record: copied once
            kind = mm[at]
            record = mm[at + 1 : at + length]
            if crc32(record, _KIND_CRC[kind]) != crc:
                if not final:
                    break  # not all of it is visible here yet: the next turn
                refused += 1
            else:
                out.append((kind, record))
            read += size
        self.read = read
        self.words[_fmt.WORD_READ] = read
        return out, refused

    def in_flight(self) -> bytes | None:
        """The span of the task its writer was running, as written before the call; None
        when it ran none. Read only once the writer is gone: while it lives, the slot
        changes under the reader."""
        if not self.slot:
            return None
        at = _fmt.HEADER + self.capacity
        length = _fmt.U64.unpack_from(self.mm, at)[0]
        if not 0 < length <= self.slot - 8:
            return None
        return bytes(self.mm[at + 8 : at + 8 + length])

    def close(self) -> None:
        try:
            self.words.release()
            self.mm.close()
        except (BufferError, ValueError):  # pragma: no cover
            pass
