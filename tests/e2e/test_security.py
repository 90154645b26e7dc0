"""Nobody else gets in: credentials off command lines, trace files only where the user alone
can write, tested with a second local user (``nobody``) playing the attacker."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT, clean_env

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")

SCAN = """
import multiprocessing, os, sys, time
from proctrace import traced

def scan():
    found, agent = [], None
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if b"proctrace._agent" in cmdline:
                agent = cmdline.split(b"\\0")[:-1]
            if b"S3CRET" in cmdline or b"T0KEN" in cmdline:
                found.append(entry)
    return agent, found

@traced
def child():
    read, write = os.pipe()
    if os.fork() == 0:  # another local user reading every command line, as `ps` does
        if os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        os.write(write, repr(scan()).encode())
        os._exit(0)
    os.close(write)
    agent, found = eval(os.read(read, 1 << 16))
    os.wait()
    print("agent", agent, flush=True)
    print("leaks", found, flush=True)

if __name__ == "__main__":
    p = multiprocessing.Process(target=child); p.start(); p.join()
"""


def test_no_setting_reaches_a_command_line_and_credentials_reach_the_backend(
    run_script, tmp_path
):
    """While a run with endpoint userinfo and an Authorization header is under way, no
    /proc/*/cmdline holds either (the agent's is `python -P -m proctrace._agent FD PID FD`),
    and the backend receives both: the header, and the userinfo as Basic credentials."""
    from proctrace.testing import OTLPReceiver

    with OTLPReceiver("http/protobuf") as receiver:
        endpoint = receiver.endpoint.replace("http://", "http://app:S3CRET@")
        env = {
            **receiver.env(),
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=T0KEN",
            "OTEL_SERVICE_NAME": "svc-S3CRET",
        }
        run = run_script(SCAN, env=env)
        assert run.returncode == 0, run.stderr
        receiver.wait_for_spans(2)
        headers = receiver.last_headers
    assert "leaks []" in run.stdout
    agent = re.search(r"agent \[(.*)\]", run.stdout).group(1)
    assert agent.count(",") == 6, agent  # python, -P, -m, proctrace._agent, FD, PID, FD: no more
    assert headers["x-api-key"] == "T0KEN"
    assert headers["authorization"].startswith("Basic ")
    assert "S3CRET" not in run.stderr


PROGRAM = """
import multiprocessing
from proctrace import traced

@traced
def child():
    pass

if __name__ == "__main__":
    p = multiprocessing.Process(target=child); p.start(); p.join()
"""


def _shared_dir() -> Path:
    """A directory every local user can write to, as /tmp or a shared project directory is."""
    shared = Path(tempfile.mkdtemp(prefix="proctrace-shared-"))
    shared.chmod(0o1777)
    (shared / "prog.py").write_text(PROGRAM)
    (shared / "prog.py").chmod(0o644)
    return shared


def _as_nobody(*commands: list[str]) -> None:
    for command in commands:
        subprocess.run(command, check=True, user=NOBODY, group=NOBODY)


def _run(cwd: Path, state: Path, **extra: str) -> subprocess.CompletedProcess:
    env = clean_env(XDG_STATE_HOME=str(state), **extra)
    return subprocess.run(
        [sys.executable, "prog.py"], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=60,
    )


def _written_to(stderr: str, cwd: Path) -> Path:
    match = re.search(r"written to (\S+?)[;\s]", stderr)
    assert match, stderr
    return cwd / match.group(1)


@needs_root
def test_a_planted_trace_directory_symlink_is_not_followed(tmp_path):
    """Another user plants `.proctrace` -> a directory they own, in a shared working
    directory: nothing is written there; the run falls back to the per-user location, and the
    exit line says where and why."""
    shared = _shared_dir()
    try:
        _as_nobody(
            ["mkdir", str(shared / "loot")], ["ln", "-s", "loot", str(shared / ".proctrace")]
        )
        run = _run(shared, tmp_path / "state")
        assert run.returncode == 0, run.stderr
        assert os.listdir(shared / "loot") == []
        written = _written_to(run.stderr, shared)
        assert written.parent == tmp_path / "state" / "proctrace"
        assert "symlink owned by uid 65534" in run.stderr
        assert "see them with: proctrace view " in run.stderr
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
    finally:
        shutil.rmtree(shared)


@needs_root
def test_a_trace_directory_owned_or_writable_by_another_user_is_not_used(tmp_path):
    """An existing `.proctrace` owned by another user (mode 0777) is neither written into nor
    has its permissions changed; the run falls back."""
    shared = _shared_dir()
    try:
        _as_nobody(["mkdir", "-m", "777", str(shared / ".proctrace")])
        os.chmod(shared / ".proctrace", 0o777)  # mkdir -m is filtered by umask
        run = _run(shared, tmp_path / "state")
        assert run.returncode == 0, run.stderr
        assert os.listdir(shared / ".proctrace") == []
        assert stat.S_IMODE((shared / ".proctrace").stat().st_mode) == 0o777
        assert "owned by uid 65534" in run.stderr
        assert _written_to(run.stderr, shared).exists()
    finally:
        shutil.rmtree(shared)


@needs_root
def test_a_group_or_world_writable_directory_of_ones_own_is_not_used(tmp_path):
    """Even the user's own `.proctrace`, if others can write to it, is passed over."""
    (tmp_path / "prog.py").write_text(PROGRAM)
    (tmp_path / ".proctrace").mkdir()
    os.chmod(tmp_path / ".proctrace", 0o777)
    run = _run(tmp_path, tmp_path / "state")
    assert run.returncode == 0, run.stderr
    assert os.listdir(tmp_path / ".proctrace") == []
    assert "writable by others (mode 0777)" in run.stderr


@pytest.mark.parametrize("where", ["under-a-file", "under-proc"])
def test_an_unwritable_trace_directory_falls_back_and_says_so(tmp_path, where):
    """PROCTRACE_DIR under a file, or under /proc: the spans go to the per-user location the
    exit line names (never a claim about a file that does not exist), and `proctrace view`
    with that path shows them."""
    (tmp_path / "prog.py").write_text(PROGRAM)
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "traces" if where == "under-a-file" else "/proc/proctrace-x"
    run = _run(tmp_path, tmp_path / "state", PROCTRACE_DIR=str(target))
    assert run.returncode == 0, run.stderr
    written = _written_to(run.stderr, tmp_path)
    assert written.exists()
    assert "cannot be created" in run.stderr or "is not a directory" in run.stderr
    view = subprocess.run(
        [sys.executable, "-m", "proctrace", "view", str(written)], cwd=tmp_path,
        env=clean_env(), capture_output=True, text=True, timeout=60,
    )
    assert view.returncode == 0 and "child" in view.stdout, view.stderr


def _python_for_another_user() -> str:
    """An interpreter and packages the user `nobody` can read (the test venv's python may
    live under root's home); skip when there is none."""
    python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    purelib = sysconfig.get_paths()["purelib"]
    probe = subprocess.run(
        [python, "-c", "import structlog, opentelemetry.sdk"],
        env={"PYTHONPATH": purelib}, user=NOBODY, group=NOBODY, capture_output=True,
    ) if os.path.exists(python) else None
    if probe is None or probe.returncode != 0 or not os.access(str(ROOT), os.R_OK):
        pytest.skip(f"no {python} with readable packages for the user nobody")
    return python


@needs_root
def test_when_nothing_can_be_written_the_lost_spans_are_counted_and_the_status_kept(tmp_path):
    """A user with no writable working directory, no home, and a per-user /tmp directory
    planted by someone else: one line says how many spans were lost and why; the program's
    exit status is unchanged."""
    python = _python_for_another_user()
    shared = Path(tempfile.mkdtemp(prefix="proctrace-ro-"))
    shared.chmod(0o755)
    (shared / "prog.py").write_text(PROGRAM + "    raise SystemExit(5)\n")
    (shared / "prog.py").chmod(0o644)
    planted = Path(tempfile.gettempdir()) / f"proctrace-{NOBODY}"
    planted.mkdir(exist_ok=True)  # owned by root: not nobody's
    try:
        env = clean_env(HOME="/nonexistent")
        env.pop("XDG_STATE_HOME", None)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"]])
        run = subprocess.run(
            [python, "prog.py"], cwd=shared, env=env, capture_output=True, text=True,
            timeout=60, user=NOBODY, group=NOBODY,
        )
        assert run.returncode == 5, run.stderr
        lines = [x for x in run.stderr.splitlines() if x.startswith("proctrace:")]
        assert len(lines) == 1, lines
        assert re.match(r"proctrace: 2 spans lost: no trace file could be written", lines[0])
        assert "written to" not in run.stderr
    finally:
        planted.rmdir()
        shutil.rmtree(shared)


SHADOWED = """
import multiprocessing
from proctrace import traced

@traced
def child(i):
    pass

if __name__ == "__main__":
    for i, method in enumerate(("fork", "spawn")):
        p = multiprocessing.get_context(method).Process(target=child, args=(i,))
        p.start(); p.join()
    print("done")
"""


def test_modules_in_the_programs_directory_do_not_shadow_the_agents(run_script, tmp_path):
    """A project's own ``queue.py``, ``platform.py``, ``uuid.py`` and ``logging.py`` beside
    the program (which itself never imports the standard library's): the agent, started in
    that directory, still imports the standard library's and exports every span. Before, it
    died importing them and the run's spans were lost. The same keeps a file planted there
    by another user out of the agent."""
    from proctrace.testing import OTLPReceiver

    for name in ("queue", "platform", "uuid", "logging"):
        (tmp_path / f"{name}.py").write_text(
            f"raise RuntimeError('the project\\'s own {name}.py was imported')\n"
        )
    with OTLPReceiver() as receiver:
        run = run_script(SHADOWED, env=receiver.env())
        assert run.returncode == 0, run.stderr
        assert "done" in run.stdout
        spans = receiver.wait_for_spans(3, timeout=15)
    assert "own" not in run.stderr and "cannot reach" not in run.stderr, run.stderr
    assert sorted(s.name for s in spans) == ["child", "child", "prog"], [
        s.name for s in spans
    ]


MANAGERS = """
import multiprocessing, sys
from multiprocessing.managers import BaseManager

class Registry(BaseManager):
    pass

def table():
    return {"x": 1}

Registry.register("table", callable=table)

if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    print(repr(bytes(multiprocessing.current_process().authkey)), flush=True)
    with multiprocessing.Manager() as manager:
        shared = manager.dict(a=1)
        assert shared["a"] == 1
    registry = Registry(address=("127.0.0.1", 0), authkey=b"hunter2-authkey-S3CRET")
    registry.start()
    assert registry.table().get("x") == 1
    registry.shutdown()
"""


def test_a_managers_authkey_never_reaches_a_span_or_a_line(tmp_path, method):
    """``proctrace run`` on a program with a ``Manager()`` (keyed with the process's own
    authkey) and a ``BaseManager`` with an authkey of its own: their server processes' spans
    and lines show ``[REDACTED]`` for the key, which reaches neither the backend, stderr nor
    the trace file (whoever holds it can send the manager pickles)."""
    from proctrace.testing import OTLPReceiver

    (tmp_path / "prog.py").write_text(MANAGERS)

    def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "proctrace", "run", "prog.py", method],
            cwd=tmp_path, env=clean_env(**env), capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done

    with OTLPReceiver() as receiver:
        sending = run(receiver.env())
        spans = receiver.wait_for_spans(3, timeout=15)
    writing = run({})  # no backend: the local trace file
    servers = [s for s in spans if s.name.endswith("_run_server")]
    assert len(servers) == 2, [s.name for s in spans]
    for span in servers:
        assert "[REDACTED]" in span.attributes["proctrace.args"], span.attributes
    sent = repr([s.attributes for s in spans]) + repr([s.events for s in spans])
    written = "".join(p.read_text() for p in (tmp_path / ".proctrace").glob("*.jsonl"))
    assert written.count("_run_server") >= 2, written
    for done, where in ((sending, sent), (writing, written)):
        own_key = done.stdout.strip().splitlines()[0]  # the program's authkey: bytes' repr
        for text in (where, done.stderr):
            assert "hunter2" not in text and own_key[2:-1] not in text
        assert done.stderr.count("[REDACTED]") >= 2  # the started lines of both servers


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("how", ["env", "traces_env", "flag"])
def test_an_endpoints_password_appears_in_no_message(tmp_path, protocol, how):
    """An endpoint with userinfo that refuses: the exit lines of the run (spans kept) and of
    `proctrace send` (file kept) name it without its userinfo, however it was given."""
    (tmp_path / "prog.py").write_text(PROGRAM)
    endpoint = "http://app:hunter2-S3CRET@127.0.0.1:1/"
    env = clean_env(OTEL_EXPORTER_OTLP_PROTOCOL=protocol)
    command = [sys.executable, "-m", "proctrace", "run", "prog.py"]
    if how == "env":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    elif how == "traces_env":
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = endpoint + (
            "v1/traces" if protocol != "grpc" else ""
        )
    else:
        command[4:4] = ["--endpoint", endpoint]
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert "could not be sent to http://***@127.0.0.1:1/" in run.stderr, run.stderr
    assert "S3CRET" not in run.stderr + run.stdout
    kept = re.search(r"proctrace send (\S+)", run.stderr)
    assert kept, run.stderr
    sent = subprocess.run(
        [sys.executable, "-m", "proctrace", "send", kept.group(1), "--endpoint", endpoint,
         "--protocol", protocol],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60,
    )
    assert sent.returncode == 1, sent.stderr
    assert "not sent to http://***@127.0.0.1:1/" in sent.stderr, sent.stderr
    assert "S3CRET" not in sent.stderr + sent.stdout
