"""Units of issue #12's changes: the fork child's prepared start, reports that arrive before
their span, timestamps without datetime, parameter names without inspect, the run's directory
without tempfile."""

from __future__ import annotations

import datetime
import functools
import inspect
import json
import os
import stat
import time

import pytest

from proctrace._agent import fates as _fates
from proctrace._child import forkstart, logs
from proctrace._child import span as _span
from proctrace._core import config, names
from proctrace._core.redact import positional_names
from proctrace._core.spec import code_parameters, takes_self
from proctrace._starter.run import private_directory

START = {"span": "s1", "trace": "t" * 32, "parent": None, "name": "n", "start": 1, "attrs": {}}


def test_reports_that_arrive_before_their_span_are_applied_when_it_shows_up():
    """A fork child's span is opened on the child's connection, the starter's reports come on
    its own: the collector may read the exit code and the pid first. The span ends with them."""
    emitted = []
    fates = _fates.Fates(emitted.append, grace=0.0)
    fates.signalled("s1", 9, pid=4242)
    fates.exited("s1", -9, pid=4242)
    assert fates.started(dict(START, attrs={}, process=True))
    fates.lost(dict(START, attrs={}))  # its connection ended with the span open
    (span,) = emitted
    assert span["status"] == names.STATUS_ERROR
    assert span["message"] == _fates.SIGNALS[9]
    assert span["attrs"][names.EXIT_CODE] == -9
    assert span["attrs"][names.PID] == 4242


def test_a_span_the_child_ended_takes_the_exit_code_reported_earlier():
    emitted = []
    fates = _fates.Fates(emitted.append, grace=0.0)
    fates.exited("s1", 3, pid=7)
    record = dict(START, attrs={})
    fates.started(record)
    assert fates.ended(dict(record, end=2, status=0, message="", attrs={names.EXIT_CODE: 0}))
    (span,) = emitted
    assert span["attrs"][names.EXIT_CODE] == 3  # what the process really exited with
    assert span["status"] == names.STATUS_ERROR


def test_early_reports_are_bounded():
    fates = _fates.Fates(lambda record: None, grace=0.0)
    for i in range(5000):
        fates.exited(f"{i:016x}", 0)
    assert len(fates._early) <= 4097


@pytest.mark.parametrize("micros", [0, 1, 123456, 999999])
def test_timestamps_are_what_datetime_isoformat_writes(monkeypatch, micros):
    """The lines' timestamp without the datetime module: the same text, also when the
    fraction is zero (isoformat leaves it out)."""
    seconds = 1764049123
    monkeypatch.setattr(time, "time_ns", lambda: (seconds * 1_000_000 + micros) * 1000)
    expected = (
        datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).replace(microsecond=micros)
        .isoformat().replace("+00:00", "Z")
    )
    assert logs.timestamp() == expected


class _Owner:
    def method(self, a, /, b, *args, c=1, **kwargs):
        return a

    @classmethod
    def klass(cls, x):
        return x


def _plain(password, user, *rest, token=None):
    return user


@functools.wraps(_plain)
def _wrapped(*args, **kwargs):
    return _plain(*args, **kwargs)


@pytest.mark.parametrize("fn", [_plain, _Owner.method, lambda x, y=2: x, _wrapped, len])
def test_parameter_names_match_inspect(fn):
    """Read from the code object where that is exact; inspect.signature where it is not (a
    __wrapped__ to follow, a builtin)."""
    try:
        params = inspect.signature(fn).parameters.values()
        expected = tuple(
            p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        )
    except ValueError:
        expected = ()
    assert positional_names(fn) == expected
    if fn is _wrapped or fn is len:
        assert code_parameters(fn) is None


def test_takes_self_from_the_code_object():
    assert takes_self(_Owner.method)
    assert takes_self(_Owner.__dict__["klass"].__func__)
    assert not takes_self(_plain)


def test_the_run_directory_is_private_and_new(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    first, second = private_directory(), private_directory()
    assert first != second
    for path in (first, second):
        assert os.path.dirname(path) == str(tmp_path)
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o700 & ~_umask()


def test_the_run_directory_falls_back_when_tmpdir_cannot_be_used(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "missing"))
    path = private_directory()
    assert os.path.isdir(path) and not path.startswith(str(tmp_path))
    os.rmdir(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_prepared_line_is_the_line_the_child_would_render(monkeypatch):
    """The lines a starter renders for a fork child up to the pid and the times are, once
    filled in, exactly those _render() writes, and the span event the same."""
    settings = config.Settings("svc", ("file",), "grpc", None, log_format="json")
    process_keys = {
        "process_name": "P-1", "pid": forkstart._MARK.format("pid"), "ppid": 10,
        "start_method": "fork", "function": "m.f",
    }
    ids = ("a" * 32, "b" * 16)
    line = forkstart.Line(
        "info", "process finished",
        {"duration_ms": forkstart._MARK.format("duration_ms"),
         "exit_code": forkstart._MARK.format("exit_code")},
        process_keys, ids, settings,
    )
    written = []
    monkeypatch.setattr(logs.LineWriter, "msg", lambda self, text: written.append(text))
    span = _span.Span("f", ids[0], None, {}, announce=False, span_id=ids[1])
    line.emit(span, {"pid": 77, "duration_ms": 0.5, "exit_code": 0})
    logs.set_process_keys(
        process_name="P-1", pid=77, ppid=10, start_method="fork", function="m.f"
    )
    with _span.activate(span):
        expected = logs._render(
            "info", "process finished", None, {"duration_ms": 0.5, "exit_code": 0}, attach=False
        )
    got, want = json.loads(written[0]), json.loads(expected)
    assert got.pop("timestamp") and want.pop("timestamp")
    assert got == want
    assert list(json.loads(written[0])) == list(json.loads(expected))  # the same key order
    (event,) = span.events
    assert event[0] == "process finished"
    assert event[2] == {
        "duration_ms": 0.5, "exit_code": 0, "process_name": "P-1", "pid": 77, "ppid": 10,
        "start_method": "fork", "function": "m.f", "level": "info",
    }


def test_a_reaped_process_whose_connection_stays_open_is_ended_after_the_grace():
    """Another process may hold a child's connection open (forked meanwhile by another thread
    of the starter): once the starter reaped the child, its open span ends within the grace."""
    emitted = []
    fates = _fates.Fates(emitted.append, grace=0.0)
    fates.started(dict(START, attrs={}))
    fates.exited("s1", -9, pid=5)
    assert not emitted and fates.waiting()
    fates.tick(time.monotonic() + _fates.HELD_GRACE + 1)
    (span,) = emitted
    assert span["status"] == names.STATUS_ERROR and span["attrs"][names.EXIT_CODE] == -9


def test_a_fork_child_closes_the_connections_prepared_for_other_threads_children():
    """Two threads starting fork children at once: each child keeps only its own prepared
    connection; the other one's is closed in it, so it cannot hold that open."""
    import socket as _socket
    import threading as _threading

    mine, other = _socket.socketpair()
    theirs, far = _socket.socketpair()
    forkstart._in_flight[_threading.get_ident()] = mine
    forkstart._in_flight[-1] = theirs  # another thread's
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report which of the two are still open
        try:
            state = [s.fileno() != -1 for s in (mine, theirs)]
            os.write(w, json.dumps(state).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert json.loads(os.read(r, 100)) == [True, False]
    os.close(r)
    forkstart._in_flight.clear()
    for s in (mine, other, theirs, far):
        s.close()


def test_a_process_name_that_looks_like_a_gap_is_just_a_name(monkeypatch):
    settings = config.Settings("svc", ("file",), "grpc", None, log_format="json")
    keys = {"process_name": "\x00exit\x00", "pid": forkstart._MARK.format("pid")}
    line = forkstart.Line("info", "process started", {}, keys, ("a" * 32, "b" * 16), settings)
    written = []
    monkeypatch.setattr(logs.LineWriter, "msg", lambda self, text: written.append(text))
    span = _span.Span("f", "a" * 32, None, {}, announce=False)
    line.emit(span, {"pid": 9})
    entry = json.loads(written[0])
    assert entry["process_name"] == "\x00exit\x00" and entry["pid"] == 9
