"""Trace files: fresh names only, never through a planted link; removal only of one's own."""

from __future__ import annotations

import os

from proctrace._otlp import files

RECORD = {"trace": "a" * 32, "span": "b" * 16, "parent": None, "name": "t", "start": 1, "end": 2,
          "attrs": {}}


def test_a_link_planted_at_the_file_name_is_never_followed(tmp_path):
    """A symlink at the run's predictable file name is left alone (the victim file is not
    appended to); the trace goes to a fresh name beside it."""
    directory = tmp_path / "traces"
    directory.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, directory / "svc-1.jsonl")
    trace = files.TraceFile(files.DirectoryChoice(str(directory)), "svc-1.jsonl")
    assert trace.append([RECORD], {}) is True
    trace.close()
    assert victim.read_text() == "precious\n"
    assert trace.path == str(directory / "svc-1-1.jsonl")
    assert oct(os.stat(trace.path).st_mode & 0o777) == "0o600"


def test_an_existing_file_at_the_name_is_not_appended_to(tmp_path):
    """A regular file already at the name (someone else's run, or planted) keeps its content."""
    directory = tmp_path / "traces"
    directory.mkdir(mode=0o700)
    (directory / "svc.jsonl").write_text("theirs\n")
    trace = files.TraceFile(files.DirectoryChoice(str(directory)), "svc.jsonl")
    trace.append([RECORD], {})
    assert (directory / "svc.jsonl").read_text() == "theirs\n"


def test_nothing_is_created_before_the_first_write(tmp_path):
    """A run whose spans all went to a backend leaves no empty directory behind."""
    trace = files.TraceFile(files.DirectoryChoice(str(tmp_path / "later")), "svc.jsonl")
    trace.close()
    assert not (tmp_path / "later").exists()


def test_send_removes_only_a_regular_file_of_its_own(tmp_path):
    """`proctrace send` removes a delivered file, but not a symlink (nor what it names)."""
    target = tmp_path / "target.jsonl"
    target.write_text("{}\n")
    link = tmp_path / "link.jsonl"
    os.symlink(target, link)
    assert files.remove_delivered(str(link)) == "it is not a regular file"
    assert link.exists() and target.exists()
    assert files.remove_delivered(str(target)) is None
    assert not target.exists()


def test_directory_checks_name_the_problem(tmp_path):
    """A world-writable directory, a file, and a missing path are each refused with why."""
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    assert "writable by others" in (files.directory_problem(str(open_dir)) or "")
    (tmp_path / "f").write_text("")
    assert files.directory_problem(str(tmp_path / "f")) == "is not a directory"
    assert files.directory_problem(str(tmp_path / "none")) == "does not exist"
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    assert files.directory_problem(str(private)) is None
