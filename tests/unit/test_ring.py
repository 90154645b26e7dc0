"""The ring (``_core.ring``): what a writer publishes, a reader takes, whole and in order."""

from __future__ import annotations

import os

import pytest

from proctrace._agent import rings
from proctrace._child import ring as writer_side
from proctrace._core import ring as fmt


def _pair(capacity: int = 4096) -> tuple[writer_side.Writer, rings.Reader]:
    writer = writer_side.create(capacity)
    if writer is None:
        pytest.skip("no memfd_create here")
    reader = rings.Reader(os.dup(writer.fd))
    writer.give_fd()
    return writer, reader


def test_what_is_written_before_the_collector_reads_the_ring_is_read_from_the_first():
    """A worker does not wait for a collector still starting: the ring is used at once, and
    the collector reads it from its first record; a ring it refused is not used any more."""
    writer = writer_side.create(4096)
    if writer is None:
        pytest.skip("no memfd_create here")
    assert writer.put(fmt.SPAN, b"early")
    reader = rings.Reader(os.dup(writer.fd))
    assert writer.put(fmt.SPAN, b"late")
    assert reader.take() == ([(fmt.SPAN, b"early"), (fmt.SPAN, b"late")], 0)
    writer.mm[fmt.OFF_ATTACHED] = fmt.REFUSED
    assert not writer.put(fmt.SPAN, b"x")


def test_records_come_out_whole_and_in_order_across_many_wraps():
    writer, reader = _pair(4096)
    sent, got = [], []
    for i in range(5000):
        body = bytes([i % 251]) * (i * 37 % 900)  # 0..899 bytes: wraps at every size
        kind = fmt.SPAN if i % 3 else fmt.LINE
        for _ in range(3):  # full: the reader catches up, and then it fits
            if writer.put(kind, body):
                break
            got.extend(reader.take()[0])
        else:
            pytest.fail(f"record {i} did not fit in an empty ring")
        sent.append((kind, body))
    got.extend(reader.take()[0])
    assert got == sent
    assert reader.take() == ([], 0)


def test_a_full_ring_refuses_a_record_rather_than_overwrite_one():
    writer, reader = _pair(1024)
    puts = 0
    while writer.put(fmt.SPAN, b"y" * 100):
        puts += 1
    assert 0 < puts <= 1024 // fmt.padded(101)
    assert not writer.put(fmt.SPAN, b"y" * 2000)  # bigger than the ring: never fits
    records, _ = reader.take()
    assert len(records) == puts
    assert writer.put(fmt.SPAN, b"y" * 100)  # room again once read


def test_a_record_whose_crc_does_not_match_waits_then_is_refused_at_the_end():
    """On a weak memory model the body may not be visible yet when the position is: the
    reader waits for it; once the writer is gone (final) a record that still does not
    match is refused, and what follows it is read."""
    writer, reader = _pair(4096)
    writer.put(fmt.SPAN, b"first")
    at = fmt.HEADER + fmt.FRAME.size + 1  # the first record's body, after its kind
    writer.mm[at : at + 5] = b"FIRST"  # as if not visible yet
    writer.put(fmt.SPAN, b"second")
    assert reader.take() == ([], 0)
    assert reader.take(final=True) == ([(fmt.SPAN, b"second")], 1)


def test_positions_out_of_range_break_the_ring_and_it_is_left_alone():
    writer, reader = _pair(4096)
    writer.words[fmt.WORD_WRITE] = 10 * 4096  # more than the ring holds past the read
    records, refused = reader.take()
    assert (records, refused) == ([], 1) and reader.broken
    assert reader.take() == ([], 0)


def test_a_length_that_runs_past_the_end_breaks_the_ring():
    writer, reader = _pair(4096)
    writer.put(fmt.SPAN, b"z" * 10)
    fmt.FRAME.pack_into(writer.mm, fmt.HEADER, 5000, 0)
    assert reader.take() == ([], 1) and reader.broken


@pytest.mark.parametrize(
    "damage",
    [
        lambda mm: mm.__setitem__(slice(0, 8), b"NOTARING"),
        lambda mm: fmt.U64.pack_into(mm, fmt.OFF_CAPACITY, 12345),
    ],
)
def test_a_descriptor_that_is_not_a_ring_is_refused(damage):
    writer = writer_side.create(4096)
    if writer is None:
        pytest.skip("no memfd_create here")
    damage(writer.mm)
    with pytest.raises(rings.RingError):
        rings.Reader(os.dup(writer.fd))
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(rings.RingError):
        rings.Reader(r)  # not a regular file


def test_the_collector_reads_rings_less_often_while_they_are_quiet():
    """Quiet rings (idle pool workers, slow Dask tasks) are read every 50 ms at most, not every
    5 ms (each read costs the agent CPU); rings that fill fast, every 5 ms again."""
    from proctrace._agent.rings import Pace

    pace = Pace()
    assert pace.turn == Pace.FAST
    for _ in range(10):
        pace.took(0)
    assert pace.turn == Pace.SLOW
    pace.took(100)  # neither quiet nor busy: as it is
    assert pace.turn == Pace.SLOW
    for _ in range(10):
        pace.took(Pace.BUSY)
    assert pace.turn == Pace.FAST
    pace.took(Pace.QUIET - 1)
    assert pace.turn == 2 * Pace.FAST


def test_the_collector_pauses_longer_between_turns_that_bring_few_spans():
    """Fork children a few ms apart send a few records each, over several turns: the pause
    after a turn doubles up to BURST_QUIET while turns bring fewer than FEW spans, is BURST
    again as soon as spans flow, and is always BURST in the program's own process."""
    from proctrace._agent.rings import Pace

    pace = Pace()
    delivered = 0
    pauses = []
    for _ in range(6):
        delivered += 1
        pauses.append(pace.rest(delivered, in_process=False))
    assert pauses == [0.004, 0.008, 0.01, 0.01, 0.01, 0.01]
    delivered += Pace.FEW
    assert pace.rest(delivered, in_process=False) == Pace.BURST
    for _ in range(3):
        delivered += 1
        assert pace.rest(delivered, in_process=True) == Pace.BURST


def test_the_slot_holds_the_running_task_until_it_is_let_go_of():
    """The writer holds one running task's span in the slot (the latest; not one too big for
    it), the reader takes it as written, and finds nothing once it is let go of or the ring
    is closed (a new connection: the task then ends on the next ring)."""
    writer, reader = _pair()
    assert reader.in_flight() is None
    assert writer.hold(b"task one")
    assert reader.in_flight() == b"task one"
    assert writer.hold(b"a task inside it")  # takes it over
    assert reader.in_flight() == b"a task inside it"
    writer.free()
    assert reader.in_flight() is None
    assert writer.hold(b"task two")
    assert not writer.hold(b"x" * fmt.SLOT) and reader.in_flight() is None  # let go of
    assert writer.hold(b"task two" * 100) and reader.in_flight() == b"task two" * 100
    writer.close()
    assert reader.in_flight() is None
    assert not writer.hold(b"after close")
    writer.free()  # nothing held: nothing to do


def test_a_ring_whose_slot_size_is_not_the_format_s_is_refused():
    writer = writer_side.create(4096)
    if writer is None:
        pytest.skip("no memfd_create here")
    fmt.U64.pack_into(writer.mm, fmt.OFF_SLOT, 4096)
    with pytest.raises(rings.RingError):
        rings.Reader(os.dup(writer.fd))
