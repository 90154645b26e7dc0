"""`proctrace view`: the process tree in the terminal and as an HTML page; logs on spans."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT, by_name, clean_env, settle

GOLDEN = ROOT / "tests" / "golden"


def _proctrace(args, cwd, **env):
    return subprocess.run(
        [sys.executable, "-m", "proctrace", *args], cwd=cwd, env=clean_env(**env),
        capture_output=True, text=True, timeout=60,
    )


def _example(name, cwd, *args, **env):
    proc = subprocess.run(
        [sys.executable, "-m", f"proctrace.examples.{name}", *args], cwd=cwd,
        env=clean_env(**env), capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def normalise(text: str) -> str:
    """Ids, pids and times vary from run to run; the shape of the tree does not. What the
    processes used (CPU, memory) varies too: those lines are left out here and checked on a
    run made by hand (tests/unit/test_view_model.py)."""
    text = re.sub(r"\b[0-9a-f]{32}\b", "<trace>", text)
    text = re.sub(r"\b(pid|ppid) \d+", r"\1 <n>", text)
    text = re.sub(r"^[│ ]*used: .*\n|^  most (cpu|memory): .*\n", "", text, flags=re.M)
    return re.sub(r"\d[\d,]*\.\d+ ms", "<t> ms", text)


def test_view_prints_the_process_tree_of_the_newest_run(tmp_path):
    """After `python -m proctrace.examples.nested`, `proctrace view` (no argument) prints the
    run's tree: the main span, two children, two grandchildren under each, with pids, start
    method, duration, exit code and arguments (golden file, ids and times normalised)."""
    proc = _example("nested", tmp_path, "--method", "fork")
    assert proc.stdout.rstrip().endswith("proctrace view --html trace.html)")
    view = _proctrace(["view"], tmp_path)
    assert view.returncode == 0, view.stderr
    assert "\033[" not in view.stdout  # no colour on a pipe
    text = normalise(view.stdout)
    # Siblings are ordered by start; the two leads start in a fixed order, their leaves race.
    text = re.sub(r"'(red|blue)', [01]", r"'\1', <i>", text)
    text = re.sub(r"\b(red|blue)-[01] pid", r"\1-<i> pid", text)
    expected = (GOLDEN / "view_nested.txt").read_text()
    assert text == expected, text


def test_view_joins_a_trace_spread_over_several_files_and_picks_one(tmp_path):
    """A directory's files make one tree per trace; --trace picks one; colour can be forced."""
    _example("create", tmp_path)
    first = next((tmp_path / ".proctrace").glob("*.jsonl"))
    lines = first.read_text().splitlines(keepends=True)
    _example("create", tmp_path)
    # One run's spans split over two files, as the embedded default and the outage file do.
    split = tmp_path / "split"
    split.mkdir()
    (split / "a.jsonl").write_text("".join(lines[: len(lines) // 2 or 1]))
    (split / "a-undelivered.jsonl").write_text("".join(lines[len(lines) // 2 or 1 :]))
    both = _proctrace(["view", str(tmp_path / ".proctrace")], tmp_path)
    assert both.stdout.count("trace ") == 2 and both.stdout.count("process_task") == 6
    joined = _proctrace(["view", str(split)], tmp_path)
    assert joined.stdout.count("trace ") == 1 and joined.stdout.count("process_task") == 3
    trace_id = joined.stdout.split()[1]
    picked = _proctrace(["view", "--trace", trace_id[:8], "--color", "always",
                         str(tmp_path / ".proctrace")], tmp_path)
    assert picked.stdout.count("trace ") == 1 and "\033[" in picked.stdout
    missing = _proctrace(["view", "--trace", "ffff0000", str(split)], tmp_path)
    assert missing.returncode == 1 and "no trace ffff0000" in missing.stderr


POOL = """
import multiprocessing
from proctrace import traced

@traced
def cell(n):
    return n * n

if __name__ == "__main__":
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(cell, range(5000), chunksize=1)
"""


def test_the_terminal_view_of_a_5000_task_pool_run_fits_a_screen(tmp_path):
    """A real run of 5,000 pool tasks: the tasks are one line with count, p50/p99/max and
    errors; the whole view is under 30 lines; `--all` lists every task."""
    (tmp_path / "cells.py").write_text(POOL)
    run = subprocess.run([sys.executable, "cells.py"], cwd=tmp_path, env=clean_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    view = _proctrace(["view"], tmp_path)
    assert view.returncode == 0, view.stderr
    lines = view.stdout.splitlines()
    assert len(lines) < 30, view.stdout
    group = "─ 5,000 \u00d7 cell" r"  p50 [\d.]+ ms  p99 [\d.]+ ms  max [\d.]+ ms  0 errors"
    assert re.search(group + "  in 2 processes$", view.stdout, re.M), view.stdout
    assert view.stdout.count("ForkPoolWorker-") >= 2  # the workers, by name
    every = _proctrace(["view", "--all"], tmp_path)
    assert every.stdout.count("─ cell  ForkPoolWorker-") == 5000


LOGGING = """
import multiprocessing, sys
import structlog
from proctrace import traced

@traced
def work(n):
    structlog.get_logger().info("step", n=n, detail={"a": 1})

if __name__ == "__main__":
    p = multiprocessing.get_context(sys.argv[1]).Process(target=work, args=(3,))
    p.start(); p.join()
"""


def test_child_logs_become_events_of_its_span_unless_turned_off(run_script, receiver, method):
    """What a traced child logs through structlog is attached to its span as span events
    (name and key/values); PROCTRACE_LOG_EVENTS=false turns that off."""
    run = run_script(LOGGING, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    work = by_name(settle(receiver, 2))["work"][0]
    events = {e.name: e for e in work.events}
    assert {"process started", "step", "process finished"} <= set(events)
    assert events["step"].attributes["n"] == 3
    assert events["step"].attributes["detail"] == "{'a': 1}"
    assert events["step"].attributes["level"] == "info"
    assert events["process started"].time_unix_nano <= events["step"].time_unix_nano

    receiver.clear()
    run = run_script(LOGGING, method, env={**receiver.env(), "PROCTRACE_LOG_EVENTS": "false"})
    assert run.returncode == 0, run.stderr
    work = by_name(settle(receiver, 2))["work"][0]
    assert work.events == ()
    assert len(run.events("step")) == 1  # still logged


def test_the_html_page_is_readable_by_its_user_alone(tmp_path):
    """The page holds what the trace file holds (arguments among it): made 0600 as the trace
    file is, whatever the umask; its line counts the traces in good English."""
    import os
    import stat

    _example("create", tmp_path)
    trace = next((tmp_path / ".proctrace").glob("*.jsonl"))
    view = _proctrace(["view", "--html", "page.html", str(trace)], tmp_path)
    assert view.returncode == 0, view.stderr
    assert stat.S_IMODE(os.stat(tmp_path / "page.html").st_mode) == 0o600
    assert view.stdout.strip() == "proctrace: wrote page.html (1 trace)"


def test_html_to_standard_output_and_send_tells_a_directory_from_a_missing_file(tmp_path):
    """``--html -`` writes the page to standard output (it made a file named ``-``), and
    ``proctrace send`` says a directory or a device is not a regular file (it said "no such
    file" of both)."""
    _example("create", tmp_path)
    trace = next((tmp_path / ".proctrace").glob("*.jsonl"))
    view = _proctrace(["view", "--html", "-", str(trace)], tmp_path)
    assert view.returncode == 0, view.stderr
    assert view.stdout.startswith("<!doctype html>") and "</html>" in view.stdout
    assert not (tmp_path / "-").exists()
    sent = _proctrace(
        ["send", "--endpoint", "http://127.0.0.1:9", str(tmp_path), "/dev/null", "nothing.jsonl"],
        tmp_path,
    )
    assert sent.returncode == 1
    assert sent.stderr.splitlines() == [
        f"proctrace: cannot read {tmp_path}: not a regular file: {tmp_path}",
        "proctrace: cannot read /dev/null: not a regular file: /dev/null",
        "proctrace: cannot read nothing.jsonl: no such file: nothing.jsonl",
    ]


def test_html_never_overwrites_a_trace_file_taken_as_the_pages_name(tmp_path):
    """``proctrace view --html run.jsonl`` (no page name given: the trace file becomes it)
    wrote the page over that trace, exit status 0 (user trial). Now nothing is written, the
    trace is whole, and the line says how to call it; an earlier page is still replaced."""
    _example("create", tmp_path)
    trace = next((tmp_path / ".proctrace").glob("*.jsonl"))
    before = trace.read_bytes()
    view = _proctrace(["view", "--html", str(trace)], tmp_path)
    assert view.returncode == 2
    assert view.stderr.startswith(f"proctrace: will not write the page over {trace}: ")
    assert trace.read_bytes() == before
    piped = _proctrace(["view", str(trace), "--html", "/dev/stdout"], tmp_path)
    assert piped.returncode == 0 and piped.stdout.startswith("<!doctype html>")  # not read
    again = _proctrace(["view", str(trace), "--html", "page.html"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert _proctrace(["view", str(trace), "--html", "page.html"], tmp_path).returncode == 0


def test_view_trace_finds_an_older_run_of_the_trace_directory(tmp_path):
    """``proctrace view --trace ID`` with no path looks in every run of ``.proctrace``: it
    looked in the newest run only, and said the older run's trace (named at its exit) was
    not there (user trial)."""
    ids = []
    for _ in range(2):
        run = _example("create", tmp_path)
        ids.append(re.search(r"\(trace ([0-9a-f]{32})\)", run.stderr).group(1))
    view = _proctrace(["view", "--trace", ids[0][:8]], tmp_path)
    assert view.returncode == 0, view.stderr
    assert view.stdout.startswith(f"trace {ids[0]}")
    assert ids[1] not in view.stdout
