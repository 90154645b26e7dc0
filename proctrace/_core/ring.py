"""The ring: a process's shared-memory channel to the collector, for the records it sends most.

A pool worker sends one span per task, and a Dask worker two records per task. Over the
socket each costs a system call in the worker and a wake-up, a read and a decode in the
agent. Instead, such a process writes those records into a ring of shared memory (a
``memfd``) whose descriptor it hands the collector once (``SCM_RIGHTS`` with a ``ring``
record); the collector reads the ring on every turn of its loop. Nothing is lost when the
writer is killed: what it published is in memory the collector holds, and the collector
reads it all once the writer's connection ends, before it decides how that process ended.

The format, defined here once for both sides (all integers little-endian):

- a header of ``HEADER`` bytes: ``MAGIC``; the capacity of the data area; the write
  position (bytes written so far, only the writer writes it); the read position (only the
  collector writes it); a byte the collector sets: ``ATTACHED`` once it reads the ring,
  ``REFUSED`` if it cannot (the writer then goes back to the socket). The writer does not
  wait for it: the ``ring`` record that hands the ring over comes before anything in it, so
  the collector, however late it starts, reads the ring from its first record;
- the data area, ``capacity`` bytes, each record at ``position % capacity``: its length and
  the CRC-32 of its body (``FRAME``), then the body (one byte of kind, then the record),
  padded to 8 bytes. A record never wraps around the end: where it would, the writer
  writes ``WRAP`` and the record starts again at offset 0.

The writer copies a record, then publishes it by writing the new write position. x86
keeps stores in that order; weaker memory models need not, so the reader also checks
each record's CRC and takes a record that does not match as not published yet. The two
positions are read and written as whole aligned 64-bit words (``memoryview.cast("Q")``,
which copies all 8 bytes at once), never byte by byte as ``struct.pack_into("<Q")`` does:
the other side reads them while they change, and must never see half of a new value.

After the data area, ``SLOT`` bytes (their size in the header, at ``OFF_SLOT``) hold the pool
task running now: its span as the OTLP message it would be sent as, written before the task's
function is called (a length word, then the message; the length written last) and let go of
(the length set to 0) once the task ended, before its span is sent. The collector reads it
only once the writer is gone: a task whose process died under it (SIGKILL, the OOM killer,
``os._exit``, a crash) still has its span, ended as its process was.
"""

from __future__ import annotations

import binascii
import struct

MAGIC = b"PTRING\x00\x01"
HEADER = 64
CAPACITY = 1 << 20  # 1 MiB: about 3,000 pool task spans between two reads
OFF_CAPACITY, OFF_WRITE, OFF_READ, OFF_ATTACHED, OFF_SLOT = 8, 16, 24, 32, 40
# The task slot after the data area: a length word, then a task's span as sent; one whose
# span is longer (arguments of tens of kB) is not held, and lost if its process dies under it.
SLOT = 1 << 16
WORD_WRITE, WORD_READ = OFF_WRITE // 8, OFF_READ // 8  # as indexes of the header's words
ATTACHED, REFUSED = 1, 2  # the byte at OFF_ATTACHED
U64 = struct.Struct("<Q")
FRAME = struct.Struct("<II")  # body length, CRC-32 of the body
WRAP = 0xFFFFFFFF
# The kinds of body: a wire line (a record as the socket would carry it, without its
# newline) or an OTLP Span message (a pool task's span, binary: no hex, no JSON).
LINE, SPAN = 1, 2


# A record's CRC-32 is that of its body (its kind byte, then the record): the kind's part,
# worked out once, seeds ``binascii.crc32(record, KIND_CRC[kind])`` on both sides.
KIND_CRC = [binascii.crc32(bytes([kind])) for kind in range(256)]


def padded(length: int) -> int:
    """Bytes a record of a ``length``-byte body takes in the data area."""
    return (FRAME.size + length + 7) & ~7
