"""Units of issue #12's changes: the fork child's prepared start, reports that arrive before
their span, timestamps without datetime, parameter names without inspect, the run's directory
without tempfile."""

from __future__ import annotations

import datetime
import functools
import inspect
import json
import os
import shutil
import stat
import tempfile
import time

import pytest

from proctrace._agent import fates as _fates
from proctrace._child import forkplan, forkstart, lines, logs
from proctrace._child import span as _span
from proctrace._core import config, names
from proctrace._core.arguments import describe, positional_names
from proctrace._core.spec import TraceSpec, code_parameters, takes_self
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
    assert lines.timestamp() == expected


def test_timestamps_of_lines_across_minutes_keep_the_minute_right():
    """The text up to the minute is kept between calls: crossing a minute (or going back, as
    a fork child inheriting an older one does) gives the same text as timestamp()."""
    base = 1764049139 * 10**9
    for offset_s in (0, 0.5, 20.25, 21, 59.999999, 60, 3600.5, -120.000001, 86400 * 365):
        ns = base + int(offset_s * 10**9)
        want = '"' + lines._timestamp(ns) + '"'
        assert lines.timestamp_of(ns) == want.encode()


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


def test_the_run_directory_is_private_and_new(monkeypatch):
    short = tempfile.mkdtemp(prefix="pt-")  # a socket's path must fit in it (not tmp_path's)
    monkeypatch.setenv("TMPDIR", short)
    try:
        first, second = private_directory(), private_directory()
        assert first != second
        for path in (first, second):
            assert os.path.dirname(path) == short
            assert stat.S_IMODE(os.lstat(path).st_mode) == 0o700 & ~_umask()
    finally:
        shutil.rmtree(short)


def test_the_run_directory_falls_back_when_tmpdir_cannot_be_used(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "missing"))
    path = private_directory()
    assert os.path.isdir(path) and not path.startswith(str(tmp_path))
    os.rmdir(path)


def test_the_run_directory_is_not_made_where_its_socket_path_would_be_too_long(
    tmp_path, monkeypatch
):
    """A deep TMPDIR (a build sandbox's, a test runner's): the collector's socket could not
    be bound there (108 bytes at most), so the next place is used."""
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    monkeypatch.setenv("TMPDIR", str(deep))
    path = private_directory()
    assert os.path.isdir(path) and not path.startswith(str(tmp_path))
    assert len(os.fsencode(os.path.join(path, "collector.sock"))) <= 107
    assert not list(deep.iterdir())
    os.rmdir(path)


def test_a_run_that_cannot_be_set_up_leaves_the_program_untraced_and_says_so_once(
    monkeypatch, capsys
):
    """No place for the run's directory at all: the program goes on untraced, with one line
    saying why, and the next process started does not try again."""
    from proctrace._core import config as _config
    from proctrace._starter import run as starter

    calls = []

    def nowhere(*args, **kwargs):
        calls.append(1)
        raise PermissionError(13, "Permission denied", "/tmp")

    monkeypatch.setattr(starter, "private_directory", nowhere)  # every place refused
    monkeypatch.setattr(starter, "_runtime", None)
    monkeypatch.setattr(starter, "_unavailable", False)
    monkeypatch.setattr(starter, "_configured", _config.resolve())
    assert starter.ensure() is None and starter.ensure() is None
    assert len(calls) == 1
    err = capsys.readouterr().err
    assert err.count("proctrace: this run is not traced:") == 1 and "Permission denied" in err


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Proc:
    def __init__(self, name: str) -> None:
        self.name = name


def _traced_fn(x, y="", *rest, token=None, **more):
    return x


# Values that a template must not take for its own: '%', quotes, non-ASCII, a hole's text.
_NAME = 'P-%d "1" \u00fc \x00\x01pid\x01\x00'
_ARGS = (1, "a%sb \x00\x01ts\x01\x00", {"token": "x", "k": [1, 2]})
_KWARGS = {"key1": "v%%", "password": "p", "ünï": 3}


def _prepared(tmp_path, monkeypatch, **settings_kw):
    """A fork child's start prepared against a real listening socket; (prepared, the start
    record as the collector read it, settings)."""
    import socket as _socket

    monkeypatch.setattr(logs, "rendered_here", lambda log_format: True)
    path = str(tmp_path / "c.sock")
    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    settings = config.Settings("svc", ("file",), "grpc", None, log_format="json", **settings_kw)
    carrier = {
        "traceparent": f"00-{'a' * 32}-{'b' * 16}-01", "socket": path,
        "settings": settings.to_dict(), "starter_pid": 42, "start_method": "fork",
        "instrument": False, "sampled": True, "span": "c" * 16, "name": "_traced_fn",
        "quiet_term": False, "start": 1234,
    }
    plan = forkplan.plan_for(_traced_fn, TraceSpec(), carrier, settings)
    assert plan is not None
    forkstart.prepare(plan, _Proc(_NAME), _ARGS, _KWARGS, carrier)
    prepared = carrier[forkstart.KEY]
    conn, _ = listener.accept()
    start = json.loads(conn.recv(65536))
    for sock in (conn, listener, prepared.sock):
        sock.close()
    forkstart._in_flight.clear()
    return prepared, start, settings


def test_a_prepared_start_record_holds_what_the_child_would_have_sent(tmp_path, monkeypatch):
    _, start, settings = _prepared(tmp_path, monkeypatch)
    shown_args, shown_kwargs = describe(_traced_fn, _ARGS, _KWARGS, limit=settings.max_repr)
    assert start["trace"] == "a" * 32 and start["parent"] == "b" * 16
    assert start["span"] == "c" * 16 and start["start"] == 1234 and start["p"] is True
    attrs = start["attrs"]
    assert attrs[names.PROCESS_NAME] == _NAME
    assert attrs[names.ARGS] == shown_args
    assert {k: v for k, v in attrs.items() if k.startswith(names.KWARGS_PREFIX)} == {
        names.KWARGS_PREFIX + k: v for k, v in shown_kwargs.items()
    }
    assert shown_kwargs["password"] == "[REDACTED]" and "'x'" not in str(shown_args)
    assert attrs[names.STARTER_PID] == 42 and attrs[names.FUNCTION].endswith("._traced_fn")


def test_the_lines_a_fork_child_writes_are_the_lines_the_general_path_renders(
    tmp_path, monkeypatch
):
    """Filled in, the lines are byte for byte what ``_render()`` writes for the same event,
    keys in the same order, whatever the name and the arguments hold."""
    prepared, _, _ = _prepared(tmp_path, monkeypatch)
    ns = 1764049123_000123_000
    started = prepared.started % {b"pid": b"77", b"ts": lines.timestamp_of(ns)}
    finished = prepared.finished % {b"pid": b"77", b"ts": lines.timestamp_of(ns), b"dur": b"0.5"}
    monkeypatch.setattr(time, "time_ns", lambda: ns)
    logs.set_process_keys(
        process_name=_NAME, pid=77, ppid=os.getpid(), start_method="fork",
        function=prepared.plan.function,
    )
    try:
        with _span.activate(prepared.span):
            want_started = logs._render(
                "info", "process started", None,
                {"args": prepared.args, "kwargs": prepared.kwargs}, attach=False,
            )
            want_finished = logs._render(
                "info", "process finished", None, {"duration_ms": 0.5, "exit_code": 0},
                attach=False,
            )
    finally:
        logs.set_process_keys()
    assert started == (want_started + "\n").encode()
    assert finished == (want_finished + "\n").encode()


def test_the_end_record_of_a_fork_child_holds_the_general_paths_events(tmp_path, monkeypatch):
    prepared, _, settings = _prepared(tmp_path, monkeypatch)
    use = {b"cu": b"0.000100", b"cs": b"0.000000", b"vcs": b"1", b"ics": b"2", b"rss": b"3"}
    use.update({b"pid": b"77", b"dur": b"0.5", b"t1": b"10", b"t2": b"20", b"end": b"30"})
    end = json.loads(prepared.end % use)
    assert end["span"] == "c" * 16 and end["end"] == 30 and end["status"] == 0
    assert end["attrs"] == {
        names.EXIT_CODE: 0, names.CPU_USER: 0.0001, names.CPU_SYSTEM: 0.0,
        names.SWITCHES_VOLUNTARY: 1, names.SWITCHES_INVOLUNTARY: 2, names.MEMORY_PEAK: 3,
        names.PID: 77,
    }
    keys = [("process_name", _NAME), ("pid", 77), ("ppid", os.getpid()),
            ("start_method", "fork"), ("function", prepared.plan.function)]
    assert end["events"] == [
        ["process started", 10, logs.event_attributes(
            [("args", prepared.args), ("kwargs", prepared.kwargs), *keys], "info",
            settings.max_repr,
        )],
        ["process finished", 20, logs.event_attributes(
            [("duration_ms", 0.5), ("exit_code", 0), *keys], "info", settings.max_repr,
        )],
    ]


def test_without_log_events_the_end_record_has_none(tmp_path, monkeypatch):
    prepared, _, _ = _prepared(tmp_path, monkeypatch, log_events=False)
    use = dict.fromkeys([b"cu", b"cs", b"vcs", b"ics", b"rss", b"pid", b"end"], b"1")
    assert json.loads(prepared.end % use)["events"] == []


def test_a_function_whose_name_holds_a_holes_text_is_left_to_the_child(tmp_path):
    def fn():
        pass

    fn.__qualname__ = "f\x00\x01pid\x01\x00"
    settings = config.Settings("svc", ("file",), "grpc", None, log_format="json")
    carrier = {
        "traceparent": f"00-{'a' * 32}-{'b' * 16}-01", "socket": str(tmp_path / "x"),
        "starter_pid": 1, "quiet_term": False,
    }
    assert forkplan.plan_for(fn, TraceSpec(), carrier, settings) is None


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
