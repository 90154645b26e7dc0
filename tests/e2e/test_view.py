"""`proctrace view`: the process tree in the terminal and as an HTML page; logs on spans."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
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
    """Ids, pids and times vary from run to run; the shape of the tree does not."""
    text = re.sub(r"\b[0-9a-f]{32}\b", "<trace>", text)
    text = re.sub(r"\b(pid|ppid) \d+", r"\1 <n>", text)
    return re.sub(r"\d+\.\d ms", "<t> ms", text)


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


CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else shutil.which("chromium")


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed: .ci/run installs Debian's chromium"
)
def test_html_page_draws_every_process_of_a_run_in_a_real_browser(tmp_path):
    """`proctrace view --html` writes one page that needs no network; headless Chromium runs
    its script and draws a row with a bar for every span of the run (checked in the DOM)."""
    _example("nested", tmp_path, "--method", "spawn")
    out = tmp_path / "trace.html"
    made = _proctrace(["view", "--html", str(out)], tmp_path)
    assert made.returncode == 0, made.stderr
    page = out.read_text()
    assert "http://" not in page and "https://" not in page  # self-contained
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         out.as_uri()],
        capture_output=True, text=True, timeout=90,
    ).stdout
    assert 'data-rendered="1"' in dom, dom[:500]
    rows = re.findall(r'<div class="row" data-span-id="([0-9a-f]{16})" data-status="(\w+)"', dom)
    assert len(rows) == 7
    assert len(re.findall(r'class="bar (?:UNSET|OK|ERROR)"', dom)) == 7
    for name in ("proctrace.examples.nested", "lead", "leaf"):
        assert f"<span>{name}</span>" in dom or f'<span class="">{name}</span>' in dom
    assert dom.count(" spawn exit 0</span>") == 6  # every process drawn with its pid line


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
