"""`proctrace view`'s model and terminal text, on runs made here (no process started).

``make_run()`` builds a pool run's OTLP JSON the way proctrace writes it, with times fixed so
the output is the same every time; the browser tests (`tests/e2e/test_view_html.py`) use it
too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proctrace._cli import main as cli
from proctrace._view import html as _html
from proctrace._view import reading, spans, text

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
TRACE = "5b8efff798038103d269b633813fc60c"
STACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/cells.py", line 12, in cell\n'
    "    return 1 / (n - n)\n"
    "ZeroDivisionError: division by zero\n"
)
MS = 1_000_000
TIMES = "\u00d7"  # the multiplication sign of "5,000 x cell"
T0 = 1_764_000_000_000_000_000


def _attrs(values: dict) -> list[dict]:
    out = []
    for key, value in values.items():
        if isinstance(value, bool):
            v = {"boolValue": value}
        elif isinstance(value, int):
            v = {"intValue": str(value)}
        elif isinstance(value, float):
            v = {"doubleValue": value}
        elif isinstance(value, list):
            v = {"arrayValue": {"values": [{"stringValue": x} for x in value]}}
        else:
            v = {"stringValue": value}
        out.append({"key": key, "value": v})
    return out


def _span(n: int, name: str, parent: int | None, start: float, end: float, attrs: dict,
          error: str = "", events: list | None = None) -> dict:
    span = {
        "traceId": TRACE, "spanId": f"{n + 1:016x}", "name": name, "kind": 1,
        "startTimeUnixNano": str(T0 + int(start * MS)), "endTimeUnixNano": str(T0 + int(end * MS)),
        "attributes": _attrs(attrs), "status": {"code": 2, "message": error} if error else {},
    }
    if parent is not None:
        span["parentSpanId"] = f"{parent + 1:016x}"
    if events:
        span["events"] = events
    return span


def make_run(tasks: int = 5000, errors: tuple[int, ...] = (1234, 4321)) -> list[dict]:
    """Spans of one run: a main process, a pool of four spawn workers (the fourth idle, the
    third slow), ``tasks`` tasks over them, ``errors`` among the tasks, and one plain child."""
    main = {"process.pid": 100, "proctrace.process.name": "MainProcess",
            "process.cpu.user_s": 0.41, "process.cpu.system_s": 0.05,
            "process.memory.peak_bytes": 52_428_800}
    out = [_span(0, "cells", None, 0, 2000, main), _span(1, "pool", 0, 10, 1900, {})]
    for w in range(4):
        out.append(_span(2 + w, "multiprocessing.pool.worker", 1, 12 + w, 1950, {
            "process.pid": 101 + w, "process.parent_pid": 100, "proctrace.start_method": "spawn",
            "proctrace.process.name": f"SpawnPoolWorker-{w + 1}", "process.exit.code": 0,
            "process.cpu.user_s": [1.2, 1.1, 1.6, 0.02][w], "process.cpu.system_s": 0.1,
            "process.memory.peak_bytes": [40, 41, 96, 30][w] * 1_048_576,
            "process.context_switches.voluntary": 900 + w,
            "process.context_switches.involuntary": 7,
        }))
    base, free = 1800 * 1.6 / max(tasks, 1), [50.0, 50.0, 50.0]
    for t in range(tasks):  # each task to the first worker free; the fourth seldom gets one
        w = 3 if t % 1000 == 999 else min(range(3), key=free.__getitem__)
        length = base * (1 + (t % 97) / 97) * (2.5 if w == 2 else 1)
        start = 60 + t * 1800 / tasks if w == 3 else free[w] + base / 50
        if w < 3:
            free[w] = start + length
        attrs = {"process.pid": 101 + w, "process.parent_pid": 100,
                 "proctrace.process.name": f"SpawnPoolWorker-{w + 1}",
                 "proctrace.start_method": "spawn", "code.function.name": "__main__.cell",
                 "proctrace.args": [str(t)], "proctrace.task.cpu_s": round(length / 1000, 6)}
        events = None
        if t in errors:
            events = [{"timeUnixNano": str(T0 + int((start + length) * MS)), "name": "exception",
                       "attributes": _attrs({"exception.type": "ZeroDivisionError",
                                             "exception.message": "division by zero",
                                             "exception.stacktrace": STACK})}]
        out.append(_span(6 + t, "cell", 1, start, start + length, attrs,
                         "ZeroDivisionError: division by zero" if t in errors else "", events))
    out.append(_span(6 + tasks, "report", 0, 1950, 1990, {
        "process.pid": 200, "process.parent_pid": 100, "proctrace.start_method": "fork",
        "proctrace.process.name": "report-1", "process.exit.code": 0,
        "process.cpu.user_s": 0.01, "process.cpu.system_s": 0.0, "proctrace.args": ["'daily'"],
    }))
    return out


def write_run(path: Path, spans_: list[dict], batch: int = 512) -> Path:
    """``spans_`` as a trace file: one export request of ``batch`` spans per line."""
    resource = {"attributes": _attrs({"service.name": "cells"})}
    with open(path, "w") as out:
        for i in range(0, len(spans_), batch):
            request = {"resourceSpans": [{"resource": resource, "scopeSpans": [
                {"scope": {"name": "proctrace"}, "spans": spans_[i:i + batch]}]}]}
            out.write(json.dumps(request, separators=(",", ":")) + "\n")
    return path


def _roots(tmp_path: Path, spans_: list[dict]) -> dict:
    run = reading.Reading().add([str(write_run(tmp_path / "run.jsonl", spans_))])
    assert run.notes == []
    return spans.trees(run.spans.values())


def test_a_5000_task_run_fits_a_screen_in_the_terminal(tmp_path):
    """5,000 same-name tasks are one line (count, p50/p99/max, errors, processes), each error
    is still listed with its exception; processes show their multiprocessing names and what
    they used, and a line per run names those that used the most CPU and memory (golden)."""
    lines = list(text.render(_roots(tmp_path, make_run())))
    assert len(lines) <= 30
    golden = GOLDEN / "view_pool_5000.txt"
    assert "\n".join(lines) + "\n" == golden.read_text(), "\n".join(lines)


def test_all_lists_every_span_and_groups_start_at_six(tmp_path):
    """`--all` lists each of the 5,000 tasks; five same-name siblings stay listed, six are
    summarised."""
    roots = _roots(tmp_path, make_run())
    every = list(text.render(roots, expand_all=True))
    assert sum(1 for line in every if "─ cell " in line) == 5000
    assert sum(1 for line in every if "args: " in line) == 5001
    for count, grouped in ((5, False), (6, True)):
        shown = list(text.render(_roots(tmp_path, make_run(tasks=count, errors=()))))
        assert any(f"{count} {TIMES} cell" in line for line in shown) is grouped, shown


@pytest.mark.slow
def test_a_chain_of_100000_spans_and_a_parent_cycle_are_drawn_without_recursion(tmp_path):
    """A trace 100,000 spans deep (each the parent of the next) prints and makes its page;
    two spans that name each other as parent are still shown once each."""
    chain = [_span(i, f"s{i}", i - 1 if i else None, i, i + 1, {}) for i in range(100_000)]
    roots = _roots(tmp_path, chain)
    lines = list(text.render(roots))
    assert len(lines) == 100_002 and max(len(line) for line in lines) < 300
    assert "s99999" in _html.page(roots, "deep")
    cycle = [_span(0, "a", 1, 0, 1, {}), _span(1, "b", 0, 0, 1, {})]
    shown = "\n".join(text.render(_roots(tmp_path, cycle)))
    assert shown.count("─ a ") == 1 and shown.count("─ b ") == 1


def test_durations_are_written_with_the_digits_that_matter():
    assert [spans.ms(v) for v in (0.04, 0.3, 2.1, 330.94, 0.004, 0, 12345.6)] == [
        "0.04 ms", "0.3 ms", "2.1 ms", "330.9 ms", "0.004 ms", "0.0 ms", "12,345.6 ms"]


COLLECTOR = {
    "resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeSpans": [{"scope": {"name": "x"}, "spans": [
            {"traceId": "W47/95gDgQPSabYzgT/GDA==", "spanId": "AAAAAAAAAAE=", "name": "GET /",
             "kind": "SPAN_KIND_SERVER", "startTimeUnixNano": "1764000000000000000",
             "endTimeUnixNano": "1764000000250000000", "status": {"code": "STATUS_CODE_ERROR",
                                                                 "message": "boom"}},
            {"traceId": TRACE, "spanId": "0000000000000002", "parentSpanId": "AAAAAAAAAAE=",
             "name": "db", "kind": 3, "startTimeUnixNano": 1764000000010000000,
             "endTimeUnixNano": 1764000000020000000, "status": {"code": 1}},
        ]}],
    }]
}


@pytest.mark.parametrize("layout", ["line", "pretty", "pretty-twice"])
def test_otlp_json_of_other_tools_is_read(tmp_path, layout, capsys):
    """The Collector's file exporter's shape with enum names or numbers, base64 ids (the
    protobuf JSON mapping), a pretty-printed `.json` file, two pretty requests in one file."""
    body = {
        "line": json.dumps(COLLECTOR) + "\n",
        "pretty": json.dumps(COLLECTOR, indent=2),
        "pretty-twice": json.dumps(COLLECTOR, indent=4) + "\n" + json.dumps(COLLECTOR, indent=1),
    }[layout]
    path = tmp_path / "export.json"
    path.write_text(body)
    cli.main(["view", str(path)])
    out, err = capsys.readouterr()
    assert err == ""
    assert f"trace {TRACE}  api  2 spans  250.0 ms  1 error\n" in out
    assert "└─ GET /  250.0 ms  ERROR: boom\n   └─ db  10.0 ms\n" in out, out


BAD = {
    "binary.jsonl": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "line 1: binary data, not OTLP JSON"),
    "nope.jsonl": (b'{"resourceSpans": "nope"}\n',
                   "line 1: not an OTLP trace export request (resourceSpans a str, not a list)"),
    "text.json": (b"hello\n", "line 1: not JSON (Expecting value at column 1)"),
    "latin1.jsonl": (b'{"a": "\xe9t\xe9"}\n', "line 1: not UTF-8 text (byte 0xe9 at column 8)"),
    "empty.jsonl": (b"", "no spans in it"),
    "shape.jsonl": (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 1}, 3]}]}]}\n',
                    "line 1: 2 spans dropped (traceId missing or not an id)"),
    "deep.jsonl": (b"[" * 100_000 + b"\n", "line 1: JSON nested too deeply to read"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_file_that_cannot_be_read_is_one_line_naming_it_and_exit_1(tmp_path, name, capsys):
    """Each bad file: one line on stderr naming the file, the line and the problem; exit 1
    because nothing could be read; no traceback."""
    content, problem = BAD[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SystemExit) as stop:
        cli.main(["view", str(path)])
    out, err = capsys.readouterr()
    assert stop.value.code == 1 and out == ""
    assert err == f"proctrace: {path}: {problem}\nproctrace: no spans could be read\n"


def test_good_spans_are_shown_beside_what_could_not_be_read(tmp_path, capsys):
    """A truncated last line, a missing file and an empty directory are each reported in one
    line; the spans that could be read are shown and the exit status is 0."""
    good = write_run(tmp_path / "run.jsonl", make_run(tasks=10, errors=()))
    good.write_bytes(good.read_bytes() + b'{"resourceSpans": [{"scopeSpans": [{"spa')
    (tmp_path / "empty").mkdir()
    cli.main(["view", str(good), str(tmp_path / "missing.jsonl"), str(tmp_path / "empty")])
    out, err = capsys.readouterr()
    assert f"10 {TIMES} cell" in out
    assert err.splitlines() == [
        f"proctrace: {good}: line 2: truncated: the file ends inside this record",
        f"proctrace: {tmp_path / 'missing.jsonl'}: cannot be read (No such file or directory)",
        f"proctrace: {tmp_path / 'empty'}: no trace files (*.jsonl, *.json) in it",
    ]


def test_the_page_template_is_installed_with_the_package():
    """`page.html` is package data (a non-editable install has it) and is read from there."""
    import tomllib
    from importlib import resources

    project = tomllib.loads((GOLDEN.parent.parent / "pyproject.toml").read_text())
    assert "page.html" in project["tool"]["setuptools"]["package-data"]["proctrace._view"]
    page = resources.files("proctrace._view").joinpath("page.html").read_text(encoding="utf-8")
    assert all(key in page for key in ("__TITLE__", "__ROWS__", "__DATA__"))
    assert "http:" not in page and "https:" not in page and "//cdn" not in page
