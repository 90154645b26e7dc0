"""`proctrace run` is `python` with tracing: the program gets what python would give it, and
proctrace's own output is what the README says (none with --quiet but warnings)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import pytest
from conftest import by_name, clean_env, settle

SHOW = """
import sys
loader = globals().get("__loader__")
print("name", __name__)
print("file", globals().get("__file__"))
print("argv", sys.argv)
print("path0", sys.path[0])
print("spec", getattr(__spec__, "name", None), getattr(__spec__, "origin", None))
print("package", repr(globals().get("__package__")), "cached", globals().get("__cached__"))
print("loader", type(loader).__name__, getattr(loader, "name", None), getattr(loader, "path", None))
print("globals", sorted(globals()))
print("builtins", type(__builtins__).__name__, sys.modules["__main__"].__dict__ is globals())
print("annotations", __annotations__)
"""

BOOM = """
def fail():
    raise ValueError("boom")

fail()
"""

CLI = """
import argparse
parser = argparse.ArgumentParser(description="the program's own help")
parser.add_argument("-x", action="store_true")
parser.add_argument("--endpoint")
print(parser.parse_args())
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Scripts, a symlink, a package with __main__, a directory with __main__, a bad module."""
    (tmp_path / "show.py").write_text(SHOW)
    (tmp_path / "cli.py").write_text(CLI)
    (tmp_path / "boom.py").write_text(BOOM)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "show.py").write_text(SHOW)
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "show.py").symlink_to(tmp_path / "sub" / "show.py")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    for name in ("__main__.py", "mod.py"):
        (tmp_path / "pkg" / name).write_text(SHOW)
    (tmp_path / "pkg" / "boom.py").write_text(BOOM)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__main__.py").write_text(SHOW)
    return tmp_path


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None,
         command: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(command or [sys.executable, "-m", "proctrace", "run"]), *args],
        cwd=cwd, env=clean_env(**(env or {})), capture_output=True, text=True, timeout=90,
    )


def _python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run(args, cwd, command=[sys.executable])


def _same(args: list[str], cwd: Path, command: list[str] | None = None) -> None:
    plain, traced = _python(args, cwd), _run(args, cwd, command=command)
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout), traced.stderr
    assert traced.stderr == plain.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["show.py", "-h", "--endpoint", "http://x:1", "--quiet", "--", "-x"],
        ["sub/show.py", "a", "--exporter", "none"],
        ["./sub/../sub/show.py"],
        ["link/show.py", "--service-name", "s"],
        ["-m", "pkg.mod", "-h", "--protocol", "grpc", "--", "-x"],
        ["-m", "pkg", "--help"],
        ["-mpkg.mod", "q"],
        ["app", "-m", "x"],
        ["cli.py", "-h"],
        ["-m", "cli", "-x", "--endpoint", "e"],
    ],
    ids=["script", "subdir", "unnormalized", "symlink", "module", "package", "mmodule", "dir",
         "help", "module-options"],
)
def test_the_program_gets_what_python_gives_it(tree, args):
    """sys.argv (options and -h after the program included), __file__, sys.path[0], __spec__,
    __package__, __cached__, __loader__ and the module's globals: as under plain python."""
    _same(args, tree)


def test_the_absolute_path_and_the_console_script_too(tree):
    """The installed `proctrace` command (whose own sys.path[0] is the scripts directory)."""
    script = shutil.which("proctrace", path=sysconfig.get_path("scripts"))
    assert script is not None
    _same([str(tree / "sub" / "show.py"), "1"], tree, command=[script, "run"])
    _same(["-m", "pkg.mod", "2"], tree, command=[script, "run"])


def test_proctrace_options_go_before_and_a_double_dash_ends_them(tree):
    """`proctrace run [options] -- script.py args`: the script gets exactly its arguments."""
    plain = _python(["show.py", "a", "--", "-b"], tree)
    traced = _run(["--service-name", "svc", "--quiet", "--", "show.py", "a", "--", "-b"], tree)
    assert traced.returncode == 0, traced.stderr
    assert traced.stdout == plain.stdout


@pytest.mark.parametrize(
    "args", [["nosuch.py"], ["-m", "nosuchmod"], ["-m", "pkg.nope"], ["sub"], ["boom.py"],
             ["-m", "pkg.boom"]],
    ids=["script", "module", "submodule", "dir-without-main", "raises", "module-raises"],
)
def test_errors_are_pythons_own(tree, args):
    """A missing script or module, or an uncaught exception: python's own message (no frame
    of proctrace in the traceback) and exit status."""
    _same(args, tree)


def test_proctrace_help_and_usage_errors(tree):
    """Before the program, -h is proctrace's help; a usage error is status 2."""
    shown = _run(["-h"], tree)
    assert shown.returncode == 0 and "--quiet" in shown.stdout and "-m module" in shown.stdout
    for args in ([], ["-m"], ["--bogus", "show.py"], ["--exporter", "zipkin", "show.py"]):
        failed = _run(args, tree)
        assert failed.returncode == 2 and failed.stdout == "", (args, failed.stderr)


def test_compileall_with_worker_processes(tmp_path, receiver):
    """`proctrace run -m compileall -q -j 2 DIR`: compiles, and its worker processes are
    traced under the main span."""
    source = tmp_path / "src"
    source.mkdir()
    for i in range(6):
        (source / f"m{i}.py").write_text(f"X = {i}\n")
    proc = _run(["-m", "compileall", "-q", "-j", "2", "src"], tmp_path, receiver.env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert len(list((source / "__pycache__").glob("m*.pyc"))) == 6
    receiver.wait_for_spans(2, timeout=15)
    spans = by_name(receiver.spans)
    (main,) = spans["compileall"]
    workers = spans["concurrent.futures.process._process_worker"]
    assert workers and all(w.parent_span_id == main.span_id for w in workers)
    assert {s.trace_id for s in receiver.spans} == {main.trace_id}


TESTS = """
import multiprocessing

def child():
    pass

def test_starts_a_process():
    p = multiprocessing.get_context("fork").Process(target=child)
    p.start(); p.join()
    assert p.exitcode == 0

def test_fails():
    assert 1 == 2

def test_never_runs_with_x():
    assert False
"""


def test_pytest_gets_its_options_and_its_exit_status_passes_through(tmp_path, receiver):
    """`proctrace run -m pytest -x -q`: -x stops at the first failure, status 1, and the main
    span says so."""
    (tmp_path / "test_tiny.py").write_text(TESTS)
    proc = _run(["-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"], tmp_path, receiver.env())
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"\b1 failed, 1 passed\b", proc.stdout), proc.stdout
    spans = by_name(settle(receiver, 2))
    main, child = spans["pytest"][0], spans["child"][0]
    assert child.parent_span_id == main.span_id
    assert main.attributes["process.exit.code"] == 1 and main.status_code == "ERROR"


FAMILY = """
import multiprocessing, os, sys

def child(n):
    os.write(1, f"child {n}\\n".encode())  # one write: children share the pipe

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    ps = [ctx.Process(target=child, args=(i,)) for i in range(2)]
    for p in ps: p.start()
    for p in ps: p.join()
"""


def _trace_file_spans(directory: Path) -> list[dict]:
    spans = []
    for path in directory.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            for resource in json.loads(line)["resourceSpans"]:
                for scope in resource["scopeSpans"]:
                    spans.extend(scope["spans"])
    return spans


def test_what_proctrace_adds_to_stderr_by_default(tmp_path):
    """The README's list: a started and a finished line per child, one exit line."""
    (tmp_path / "family.py").write_text(FAMILY)
    proc = _run(["family.py", "fork"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    events = sorted(json.loads(line)["event"] for line in lines if line.startswith("{"))
    assert events == ["process finished"] * 2 + ["process started"] * 2
    (last,) = [line for line in lines if not line.startswith("{")]
    assert re.fullmatch(r"proctrace: 3 spans \(trace \w+\) written to \.proctrace/family-\S+"
                        r"\.jsonl; see them with: proctrace view", last)


@pytest.mark.parametrize("how", ["--quiet", "-q", "PROCTRACE_QUIET"])
def test_quiet_leaves_stderr_to_the_program(tmp_path, method, how):
    """--quiet (or PROCTRACE_QUIET=true, carried to every child in the settings): nothing of
    proctrace's on stderr, and the spans (with their lifecycle events) still written."""
    if how != "--quiet" and method != "spawn":
        pytest.skip("one start method is enough for the other spellings")
    (tmp_path / "family.py").write_text(FAMILY)
    options, env = ([how], {}) if how.startswith("-") else ([], {how: "true"})
    proc = _run([*options, "family.py", method], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert sorted(proc.stdout.splitlines()) == ["child 0", "child 1"]
    spans = _trace_file_spans(tmp_path / ".proctrace")
    assert len(spans) == 3
    children = [s for s in spans if s["name"] == "child"]
    assert all("process started" in [e["name"] for e in s["events"]] for s in children)


def test_quiet_is_honoured_by_traced_programs_and_keeps_warnings(run_script, receiver):
    """PROCTRACE_QUIET=true in a @traced program: no lifecycle lines; a warning about a bad
    setting is still printed."""
    source = """
    import multiprocessing
    from proctrace import traced

    @traced
    def child():
        pass

    if __name__ == "__main__":
        p = multiprocessing.get_context("spawn").Process(target=child); p.start(); p.join()
    """
    env = {**receiver.env(), "PROCTRACE_QUIET": "true", "PROCTRACE_LOG_FORMAT": "xml"}
    run = run_script(textwrap.dedent(source), env=env)
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines() == [
        "proctrace: PROCTRACE_LOG_FORMAT=xml is not supported (auto, json, console); using auto"
    ]
    settle(receiver, 2)


def test_quiet_with_instrument(run_script, tmp_path):
    """instrument() programs read PROCTRACE_QUIET too, and the exit line is left out."""
    source = """
    import multiprocessing, proctrace

    def child():
        pass

    if __name__ == "__main__":
        proctrace.instrument()
        p = multiprocessing.get_context("forkserver").Process(target=child); p.start(); p.join()
    """
    run = run_script(textwrap.dedent(source), env={"PROCTRACE_QUIET": "1"})
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert len(_trace_file_spans(tmp_path / ".proctrace")) == 2
    assert os.listdir(tmp_path / ".proctrace")


RETURNS = """
import concurrent.futures, dataclasses, multiprocessing, sys

@dataclasses.dataclass
class Result:
    value: int

class JobError(Exception):
    pass

def work(x):
    if x == 3:
        raise JobError(f"job {x} failed")
    return Result(x * x)

def send(queue):
    queue.put(Result(7))

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    print(sys.modules["__mp_main__"] is sys.modules["__main__"])
    with ctx.Pool(2) as pool:
        print(pool.map(work, range(3)))
        try:
            pool.apply(work, (3,))
        except JobError as exc:
            print("caught", exc)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as executor:
        print(list(executor.map(work, range(3))))
    queue = ctx.Queue()
    p = ctx.Process(target=send, args=(queue,))
    p.start()
    print(queue.get(timeout=30))
    p.join()
"""


@pytest.mark.parametrize("module", [False, True], ids=["script", "module"])
def test_objects_of_classes_the_program_defines_come_back_from_children(
    tmp_path, method, module
):
    """A child returns (pool, executor) or sends (queue) an object whose class the program
    defines, or raises its own exception: the starter unpickles it from ``__mp_main__``,
    which under `proctrace run` was proctrace's own entry point (AttributeError: Can't get
    attribute 'Result', and a Pool hung) until it became the program's ``__main__`` too."""
    (tmp_path / "returns.py").write_text(RETURNS)
    args = ["-m", "returns", method] if module else ["returns.py", method]
    plain = _python(args, tmp_path)
    assert plain.returncode == 0, plain.stderr
    traced = _run(["--quiet", *args], tmp_path)
    assert (traced.returncode, traced.stdout) == (0, plain.stdout), traced.stderr
    assert traced.stdout.splitlines()[0] == "True"


IN_A_TEST = """
import multiprocessing

def square(x):
    return x * x

def test_pool():
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(square, range(3)) == [0, 1, 4]
"""


@pytest.mark.parametrize("backend", ["file", "down"])
def test_the_runs_last_lines_reach_stderr_when_it_began_inside_a_captured_test(
    tmp_path, backend
):
    """`proctrace run -m pytest` whose first process starts inside a test: the agent starts
    with pytest's capture file as its stderr, where its last lines (the trace file, the spans
    kept for later) went unseen. The program, which waits for it, writes them itself."""
    (tmp_path / "test_in.py").write_text(IN_A_TEST)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"} if backend == "down" else {}
    proc = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider"], tmp_path, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (last,) = proc.stderr.splitlines()
    if backend == "file":
        assert re.match(r"proctrace: \d+ spans \(trace \w+\) written to \.proctrace/", last)
    else:
        assert re.match(r"proctrace: \d+ spans could not be sent to http://127.0.0.1:9 ", last)
        assert "send them later with: proctrace send .proctrace/" in last


SLEEPER = """
import time

def wait():
    print("ready", flush=True)
    time.sleep(30)

wait()
"""


def test_ctrl_c_prints_the_programs_traceback_as_python_does(tmp_path):
    """SIGINT to the group of ``proctrace run prog.py`` while it sleeps: the same
    KeyboardInterrupt traceback as under python (it began with seven frames of proctrace's),
    and the process still dies of SIGINT (user trial)."""
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    outcomes = []
    for command in ([sys.executable], [sys.executable, "-m", "proctrace", "run"]):
        proc = subprocess.Popen(
            [*command, "sleeper.py"], cwd=tmp_path, env=clean_env(PROCTRACE_EXPORTER="none"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            time.sleep(0.5)  # in time.sleep() by now, under both
            os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        outcomes.append((proc.returncode, err))
    assert outcomes[1] == outcomes[0]
    assert outcomes[0][0] == -signal.SIGINT and "KeyboardInterrupt" in outcomes[0][1]


RAISING_CHILDREN = """
import sys, multiprocessing
from concurrent.futures import ProcessPoolExecutor
import proctrace

def boom(x):
    raise ValueError(x)

@proctrace.traced
def traced_boom(x):
    raise ValueError(x)

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    if sys.argv[2] == "instrument":
        proctrace.instrument()
        fn = boom
    else:
        fn = traced_boom
    p = ctx.Process(target=fn, args=(1,))
    p.start()
    p.join()
    with ctx.Pool(1) as pool:
        try:
            pool.apply(fn, (2,))
        except ValueError as exc:
            print(exc.__cause__, file=sys.stderr)
    with ProcessPoolExecutor(1, mp_context=ctx) as ex:
        try:
            ex.submit(fn, 3).result()
        except ValueError as exc:
            print(exc.__cause__, file=sys.stderr)
"""


@pytest.mark.parametrize("how", ["instrument", "decorated"])
def test_a_childs_traceback_shows_no_frames_of_proctraces_but_the_one_in_its_functions_place(
    run_script, method, how
):
    """A process target's traceback on stderr, and a pool's and an executor's remote
    traceback, hold one frame of proctrace's, where the traced function is called (the
    decorator's, or the stand-in ``instrument()`` puts there), and none of its inner ones
    (three or four more, before: the span opened, the call in it, its end)."""
    run = run_script(RAISING_CHILDREN, method, how, env={"PROCTRACE_QUIET": "true"})
    assert run.returncode == 0, run.stderr
    blocks = run.stderr.split("Traceback (most recent call last):")[1:]
    assert len(blocks) == 3, run.stderr
    for block in blocks:
        frames = re.findall(r'File "([^"]+)", line \d+, in (\S+)', block)
        assert frames[-1][1] in ("boom", "traced_boom"), block
        ours = [f for f in frames if f"{os.sep}proctrace{os.sep}" in f[0]]
        assert len(ours) == 1, block
        assert ours[0][0].endswith(("_hooks/targets.py", "_api/decorator.py")), block


def test_a_program_on_standard_input_and_a_syntax_error_are_as_python_has_them(tmp_path):
    """``proctrace run - a b`` runs the program read from standard input, as ``python - a
    b`` does (it looked for a file named ``-``), and a syntax error in the program prints as
    python prints it, without proctrace's frames, status 1 (user trial)."""
    (tmp_path / "bad.py").write_text("x = (\n")
    _same(["bad.py"], tmp_path)
    for source in (SHOW, "x = (\n", BOOM):
        plain, traced = (
            subprocess.run(
                [*command, "-", "a", "b"], input=source, cwd=tmp_path,
                env=clean_env(PROCTRACE_EXPORTER="none"), capture_output=True, text=True,
                timeout=60,
            )
            for command in ([sys.executable], [sys.executable, "-m", "proctrace", "run"])
        )
        assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout)
        assert traced.stderr == plain.stderr


def test_a_program_on_standard_input_that_is_a_terminal_is_the_interactive_prompt(tmp_path):
    """``proctrace run -`` on a terminal is python's prompt, as ``python -`` there (it read
    to Ctrl-D and ran the lines after it, with no prompt: review)."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: its standard streams are the terminal
        os.chdir(tmp_path)
        os.environ.update(clean_env(PROCTRACE_EXPORTER="none"))
        os.execv(sys.executable, [sys.executable, "-m", "proctrace", "run", "-"])
    out = b""

    def read_until(text: bytes, timeout: float = 30) -> None:
        nonlocal out
        deadline = time.monotonic() + timeout
        while text not in out and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    return

    status = None
    try:
        read_until(b">>> ")
        os.write(fd, b"print(6 * 7)\n")
        read_until(b"42\r\n>>> ")
        os.write(fd, b"exit(3)\n")  # the prompt ends, and the program with it
        deadline = time.monotonic() + 30
        while status is None and time.monotonic() < deadline:
            read_until(b"\0", 0.2)  # keep the terminal drained
            done, code = os.waitpid(pid, os.WNOHANG)
            status = code if done else None
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert b"Type \"help\"" in out and b"\n42\r\n" in out, out
    assert os.waitstatus_to_exitcode(status) == 3
