"""The agent's framing of a connection's bytes into records (``_agent/framing.py``)."""

from __future__ import annotations

import random

from proctrace._agent.framing import Lines


def _feed_all(lines: Lines, data: bytes, sizes: list[int]) -> list[bytes]:
    out: list[bytes] = []
    pos = 0
    for size in sizes:
        out += lines.feed(data[pos : pos + size])
        pos += size
    if pos < len(data):
        out += lines.feed(data[pos:])
    return out


def test_lines_come_out_whole_however_the_stream_is_cut():
    rng = random.Random(7)
    for _ in range(200):
        records = [bytes(rng.choice(b"ab{}") for _ in range(rng.randrange(0, 300)))
                   for _ in range(rng.randrange(1, 20))]  # fmt: skip
        data = b"".join(r + b"\n" for r in records)
        sizes = [rng.randrange(1, 400) for _ in range(len(data) // 50 + 1)]
        assert _feed_all(Lines(1 << 20), data, sizes) == records


def test_a_line_over_the_limit_is_dropped_and_counted_and_the_next_ones_kept():
    for sizes in ([7] * 100, [1000], [3, 40, 2, 500], [65, 1, 1, 1, 200]):
        lines = Lines(50)
        data = b"first\n" + b"x" * 120 + b"\nsecond\n" + b"y" * 51 + b"\nthird\n"
        assert _feed_all(lines, data, sizes) == [b"first", b"second", b"third"], sizes
        assert lines.dropped == 2, sizes
        assert lines.parts == [] and lines.size == 0


def test_a_line_of_exactly_the_limit_is_kept():
    lines = Lines(10)
    assert lines.feed(b"0123456") == []
    assert lines.feed(b"789\nabc") == [b"0123456789"]
    assert lines.feed(b"\n") == [b"abc"]
    assert lines.dropped == 0


def test_pieces_are_joined_once_when_the_line_ends():
    """A long line arriving in many reads is kept as its pieces until its newline: the
    agent does not copy what it holds once per read (a 40 MB record took it 9 s)."""
    lines = Lines(1 << 30)
    piece = b"z" * 65536
    for _ in range(100):
        assert lines.feed(piece) == []
    assert len(lines.parts) == 100 and all(part is piece for part in lines.parts)
    (line,) = lines.feed(b"\n")
    assert line == piece * 100
