"""Trace files: OTLP JSON, one ``ExportTraceServiceRequest`` per line, only where the user
alone can write.

This is what the OpenTelemetry Collector's file exporter writes. The files hold what the
program's processes were given (argument reprs, log values, stack traces), so they are
written only into a directory the user owns that nobody else can write to (as OpenSSH
checks ``~/.ssh``): not a symlink (unless the user owns the link and the directory it names),
owned by the user, not writable by group or others. A directory that fails these checks, or
cannot be created or written, is never written into and never has its permissions changed;
the run falls back to a per-user location instead and says so. Files get fresh names,
created with ``O_EXCL | O_NOFOLLOW`` (mode 0600) and checked with ``fstat``, so a link
planted at a predictable name is never followed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO

from .._core.records import Finished
from . import otlpjson

_CREATE = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def directory_problem(path: str) -> str | None:
    """Why ``path`` is not a directory only this user can write to (None when it is one)."""
    try:
        link = os.lstat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    uid = os.geteuid()
    if stat.S_ISLNK(link.st_mode):
        if link.st_uid != uid:
            return f"is a symlink owned by uid {link.st_uid}"
        try:
            info = os.stat(path)
        except OSError as exc:
            return f"is a symlink to nothing usable ({exc.strerror})"
    else:
        info = link
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != uid:
        return f"is owned by uid {info.st_uid}, not by you (uid {uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def _make(path: str) -> str | None:
    """Create ``path`` (mode 0700) if missing, then check it; why it is unusable, or None."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except FileExistsError:
        pass  # something that is not a directory: said below
    except OSError as exc:
        return f"cannot be created ({exc.strerror or exc})"
    problem = directory_problem(path)
    if problem is None and not os.access(path, os.W_OK | os.X_OK):
        problem = "is not writable"
    return problem


def fallback_directories(env: Mapping[str, str] | None = None) -> list[str]:
    """Per-user places for trace files when the trace directory cannot be used."""
    env = os.environ if env is None else env
    places = []
    state = env.get("XDG_STATE_HOME")
    if state and os.path.isabs(state):
        places.append(os.path.join(state, "proctrace"))
    home = env.get("HOME") or os.path.expanduser("~")
    if home and os.path.isabs(home):
        places.append(os.path.join(home, ".local", "state", "proctrace"))
    import tempfile  # here: with shutil, random, bz2 and lzma, ~15 ms of the agent's start

    places.append(os.path.join(tempfile.gettempdir(), f"proctrace-{os.geteuid()}"))
    return list(dict.fromkeys(places))


def choose_directory(requested: str) -> tuple[str | None, list[str]]:
    """The directory to write into: ``requested`` if it is safe and writable, else the first
    per-user fallback that is; with why each one before it was passed over."""
    passed_over: list[str] = []
    for path in [requested, *fallback_directories()]:
        problem = _make(path)
        if problem is None:
            return path, passed_over
        passed_over.append(f"{path} {problem}")
    return None, passed_over


class TraceFile:
    """One trace file of a run, opened on the first write (nothing is created before)."""

    def __init__(self, chooser: DirectoryChoice, name: str) -> None:
        self._chooser = chooser
        self._name = name
        self._fd: int | None = None
        self._lock = threading.Lock()
        self.path: str | None = None
        self.written = 0  # spans on disk
        self.lost = 0  # spans that could not be written
        self.error: str | None = None

    def append(self, records: Sequence[Finished], resource: Mapping[str, Any]) -> bool:
        """Append one export request holding ``records``; False (counted lost) on failure."""
        line = otlpjson.dumps(records, resource)
        try:
            with self._lock:  # whole lines: the agent's collector may write one too
                fd = self._open()
                while line:
                    line = line[os.write(fd, line) :]
        except OSError as exc:
            self.lost += len(records)
            self.error = self.error or str(exc.strerror or exc)
            return False
        self.written += len(records)
        return True

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        directory = self._chooser.directory()
        if directory is None:
            raise OSError(0, "no directory where only you can write: " + self._chooser.why())
        stem, suffix = os.path.splitext(self._name)
        for attempt in range(100):
            path = os.path.join(directory, f"{stem}-{attempt}{suffix}" if attempt else self._name)
            try:
                fd = os.open(path, _CREATE, 0o600)
            except FileExistsError:
                continue  # a fresh name only: never append to a file found in place
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                os.close(fd)
                raise OSError(0, f"{path} is not a file of yours")
            self._fd, self.path = fd, path
            return fd
        raise OSError(0, f"no free file name like {self._name} in {directory}")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class DirectoryChoice:
    """The run's trace directory, chosen (and created) when the first file is written."""

    def __init__(self, requested: str) -> None:
        self.requested = requested
        self._chosen: tuple[str | None, list[str]] | None = None

    def directory(self) -> str | None:
        if self._chosen is None:
            self._chosen = choose_directory(self.requested)
        return self._chosen[0]

    def why(self) -> str:
        """Why the requested directory (and fallbacks) were passed over; "" if none was."""
        return "; ".join(self._chosen[1]) if self._chosen else ""


def remove_delivered(path: str) -> str | None:
    """Remove a file ``proctrace send`` delivered, if it is a regular file of this user (never
    what a symlink points to); why it was left in place otherwise."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        return str(exc.strerror or exc)
    if not stat.S_ISREG(info.st_mode):
        return "it is not a regular file"
    if info.st_uid != os.geteuid():
        return f"it is owned by uid {info.st_uid}"
    try:
        os.remove(path)
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


# Reading trace files (``proctrace view``, ``proctrace send``): any input, never a crash. ----

MAX_RECORD = 32 << 20
"""The longest record read, in bytes: a line, or one request pretty-printed over several
lines. A longer one is reported and skipped without being kept in memory, so reading a file
holds at most this much of it (a 50 MB line is refused, a proctrace batch is far below)."""

Report = Callable[[int, str], None]
_PIECE = 1 << 20
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_GOES_ON = (b"}", b"]", b'"', b",")  # how an unindented line inside a record may begin
_HEX = frozenset("0123456789abcdefABCDEF")
_ID_BYTES = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


def read(path: str, report: Report | None = None) -> Iterator[dict[str, Any]]:
    """Export requests from a trace file, as dicts with hex ids.

    Reads what proctrace and the OpenTelemetry Collector's file exporter write (one request per
    line), also pretty-printed requests over several lines, ids in hex or base64. Whatever
    cannot be used is skipped and told to ``report(line, why)``; the file's content never
    raises (opening or reading it may: ``OSError``)."""
    for _line, request in read_lines(path, report):
        yield request


def read_lines(path: str, report: Report | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """``read()``, each request with the number of the line it starts on."""
    say: Report = report or (lambda line, why: None)
    with open(path, "rb") as handle:
        if b"\0" in handle.peek(8192)[:8192]:  # peek: a pipe cannot seek back
            say(1, "binary data, not OTLP JSON")
            return
        pending: list[bytes] = []
        number = start = depth = size = 0
        while (raw := _next_line(handle)) != b"":
            number += 1
            if number == 1 and raw:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if raw is None:
                if pending:
                    say(start, f"incomplete record (cut short before line {number})")
                say(number, f"longer than {MAX_RECORD >> 20} MiB: skipped")
                pending, start, depth = [], 0, 0
                continue
            text = raw.strip()
            if pending and not raw[:1].isspace() and text[:1] not in _GOES_ON:
                # Unindented and no closing bracket: a new record, so the pending one was cut.
                say(start, f"incomplete record (cut short before line {number})")
                pending, start, depth = [], 0, 0
            if pending:
                pending.append(text)
                depth, size = depth + _depth(text), size + len(raw)
                if size > MAX_RECORD:
                    say(start, f"longer than {MAX_RECORD >> 20} MiB: skipped")
                    pending, start, depth = [], 0, 0
                elif depth <= 0:
                    request, why = _parse(b"\n".join(pending))
                    if request is not None:
                        yield start, request
                    else:
                        say(start, why)
                    pending, start, depth = [], 0, 0
                continue
            if not text:
                continue
            request, why = _parse(text)
            if request is not None:
                yield number, request
            elif why.startswith("not JSON (") and _depth(text) > 0:
                pending, start, depth, size = [text], number, _depth(text), len(raw)
            else:
                say(number, why)
        if pending:
            say(start, "truncated: the file ends inside this record")


def _next_line(handle: BinaryIO) -> bytes | None:
    """The next line (b"" at the end of the file), or None for one longer than MAX_RECORD,
    which is read past in pieces of 1 MiB and never held whole."""
    piece = handle.readline(_PIECE)
    if len(piece) < _PIECE or piece.endswith(b"\n"):
        return piece
    pieces, size = [piece], len(piece)
    while piece and not piece.endswith(b"\n"):
        piece = handle.readline(_PIECE)
        size += len(piece)
        if size > MAX_RECORD:
            pieces.clear()
            while piece and not piece.endswith(b"\n"):
                piece = handle.readline(_PIECE)
            return None
        pieces.append(piece)
    return b"".join(pieces)


def _depth(text: bytes) -> int:
    """Brackets opened minus brackets closed on a line, outside strings."""
    bare = _STRINGS.sub(b"", text)
    return bare.count(b"{") + bare.count(b"[") - bare.count(b"}") - bare.count(b"]")


def _parse(text: bytes) -> tuple[dict[str, Any] | None, str]:
    """One export request from ``text`` (and ""), or None and why there is none."""
    try:
        value = json.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte 0x{text[exc.start]:02x} at column {exc.start + 1})"
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return None, "JSON nested too deeply to read"
    except ValueError:  # an integer of more digits than Python converts (4300)
        return None, "JSON with a number of too many digits to read"
    if not isinstance(value, dict):
        return None, f"a JSON {type(value).__name__}, not an OTLP export request"
    spans = value.get("resourceSpans")
    if not isinstance(spans, list):
        what = "missing" if spans is None else f"a {type(spans).__name__}, not a list"
        return None, f"not an OTLP trace export request (resourceSpans {what})"
    for resource in spans:
        for scope in _dicts(resource, "scopeSpans"):
            for span in _dicts(scope, "spans"):
                _hex_ids(span)
                for link in _dicts(span, "links"):
                    _hex_ids(link)
    return value, ""


def _dicts(parent: Any, key: str) -> list[dict[str, Any]]:
    items = parent.get(key) if isinstance(parent, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _hex_ids(span: dict[str, Any]) -> None:
    """Ids in base64 (protobuf's JSON mapping) turned into hex (OTLP/JSON's), in place."""
    for key, size in _ID_BYTES.items():
        value = span.get(key)
        if not isinstance(value, str) or not value:
            continue
        if len(value) == 2 * size and _HEX.issuperset(value):
            span[key] = value.lower()
            continue
        try:
            raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        except ValueError:
            continue
        if len(raw) == size:
            span[key] = raw.hex()
