"""A process's connection to the collector when the collector is gone: tried once, said once."""

from __future__ import annotations

import os
import socket

import pytest

from proctrace._child import wire


@pytest.fixture
def fresh_wire(monkeypatch):
    """wire's module state, put back afterwards; every connection attempt counted."""
    saved = (wire._path, wire._gone, wire._warned, wire._ring_tried, wire._defaults)
    wire.close()
    wire._defaults = None  # shared attributes another test's process set: not this one's
    attempts: list[str] = []
    real_open = wire._open

    def counting_open(path: str):
        attempts.append(path)
        return real_open(path)

    monkeypatch.setattr(wire, "_open", counting_open)
    yield attempts
    wire.close()
    wire._path, wire._gone, wire._warned, wire._ring_tried, wire._defaults = saved


def _refusing(tmp_path) -> str:
    """A socket file nothing listens on (an agent that died): connect() is refused."""
    path = str(tmp_path / "collector.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()
    return path


def test_a_collector_that_is_gone_is_tried_once_and_said_once(tmp_path, fresh_wire, capsys):
    """An agent that died made every later record a socket, a connect and a ring made and
    thrown away (~100 µs a pool task): now the first refusal is the last attempt."""
    wire.set_address(_refusing(tmp_path))
    for i in range(200):
        assert wire.send({"k": "end", "span": f"{i:016x}"}) is False
        assert wire.send_encoded(b"\x0a\x10" + bytes(200)) is False
        assert wire.send_task_line(b'{"k":"start"}') is False
    assert len(fresh_wire) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "cannot reach the trace collector" in lines[0]
    assert "ConnectionRefusedError" in lines[0]


def test_a_collector_not_there_at_all_is_given_up_on_too(tmp_path, fresh_wire, capsys):
    wire.set_address(str(tmp_path / "nothing-here.sock"))
    for _ in range(50):
        wire.send({"k": "shutdown"})
    assert len(fresh_wire) == 1
    assert "FileNotFoundError" in capsys.readouterr().err


def test_a_new_run_is_tried_again(tmp_path, fresh_wire, capsys):
    """A new address (a run set up again) is a collector that may well be there."""
    wire.set_address(_refusing(tmp_path))
    wire.send({"k": "shutdown"})
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = str(tmp_path / "live.sock")
    listener.bind(path)
    listener.listen(1)
    try:
        wire.set_address(path)
        assert wire.send({"k": "shutdown"}) is True
        conn, _ = listener.accept()
        assert conn.recv(100) == b'{"k":"shutdown"}\n'
        conn.close()
    finally:
        listener.close()
    assert len(fresh_wire) == 2


def test_a_send_that_timed_out_is_not_a_collector_gone(tmp_path, fresh_wire, monkeypatch, capsys):
    """A collector too slow to read (the send's 5 s ran out) is still there: the next record
    tries again, and the warning is still said once."""
    wire.set_address(str(tmp_path / "slow.sock"))

    def timed_out(path: str):
        fresh_wire.append(path)
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(wire, "_open", timed_out)
    for _ in range(3):
        assert wire.send({"k": "shutdown"}) is False
    assert len(fresh_wire) == 3
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_a_fork_child_of_a_process_that_gave_up_tries_once_itself(tmp_path, fresh_wire):
    """Its own records, its own warning: the child tries (and fails) once."""
    wire.set_address(_refusing(tmp_path))
    wire.send({"k": "shutdown"})
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            for _ in range(20):
                wire.send({"k": "shutdown"})
            os.write(write, str(len(fresh_wire)).encode())
        finally:
            os._exit(0)
    os.close(write)
    counted = os.read(read, 100)
    os.close(read)
    os.waitpid(pid, 0)
    assert counted == b"2"  # the parent's one attempt, then the child's one
