"""instrument()/uninstrument() and `proctrace run`: tracing programs nobody decorated."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig

from conftest import by_name, clean_env, settle

UNDECORATED = """
import multiprocessing, sys
import proctrace

def task(x, api_key=None):
    return x

def middle(method):
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(1) as pool:
        pool.map(task, [1])
    p = ctx.Process(target=task, args=(2,))
    p.start(); p.join()

def originals():
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import pool, process
    return [process.BaseProcess.start, process.BaseProcess.join, process.BaseProcess.terminate,
            pool.Pool.__init__, pool.Pool._map_async, pool.Pool.apply_async, pool.Pool.imap,
            ProcessPoolExecutor.submit, ProcessPoolExecutor.map]

if __name__ == "__main__":
    method = sys.argv[1]
    ctx = multiprocessing.get_context(method)
    before = originals()
    proctrace.instrument()
    patched = originals()
    proctrace.instrument()  # idempotent
    p = ctx.Process(target=middle, args=(method,), kwargs={})
    p.start(); p.join()
    proctrace.uninstrument()
    print(all(a is not b for a, b in zip(before, patched)), originals() == before)
    p = ctx.Process(target=task, args=(3,))
    p.start(); p.join()
"""


def test_instrument_traces_undecorated_children_grandchildren_and_pool_tasks(
    run_script, receiver, method
):
    """After instrument(), every child, grandchild and pool task has a span named after its
    target; uninstrument() restores multiprocessing's originals and stops tracing."""
    run = run_script(UNDECORATED, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True", "True"]  # patched, then the originals restored
    spans = by_name(settle(receiver, 5))
    main, middle = spans["prog"][0], spans["middle"][0]
    assert middle.parent_span_id == main.span_id
    assert middle.attributes["code.function.name"] == "__main__.middle"
    tasks = spans["task"]
    assert sorted(t.attributes["proctrace.args"] for t in tasks) == [("1",), ("2",)]
    worker = spans["multiprocessing.pool.worker"][0]
    assert worker.parent_span_id == middle.span_id
    pool_task = next(t for t in tasks if t.attributes["proctrace.args"] == ("1",))
    process_task = next(t for t in tasks if t.attributes["proctrace.args"] == ("2",))
    assert pool_task.parent_span_id == middle.span_id
    assert process_task.parent_span_id == middle.span_id
    assert process_task.attributes["process.exit.code"] == 0
    assert len(run.events("process started")) == 3  # middle, pool worker, task process


SCRIPT = """
import multiprocessing, os, sys

def work(n):
    return n * 2

def child(method):
    with multiprocessing.get_context(method).Pool(2) as pool:
        print("pool", pool.map(work, range(3)), flush=True)

if __name__ == "__main__":
    method = sys.argv[1]
    p = multiprocessing.get_context(method).Process(target=child, args=(method,))
    p.start(); p.join()
    print("stdin:", sys.stdin.read().strip(), flush=True)
    print("error line", file=sys.stderr)
    sys.exit(int(sys.argv[2]))
"""


def _proctrace(args, cwd, env, stdin="hello"):
    return subprocess.run(
        [sys.executable, "-m", "proctrace", "run", *args],
        cwd=cwd,
        env=clean_env(**env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
    )


def _check_tree(receiver, root_name):
    # The main span, the child, three tasks and the pool's workers. A spawn worker that the
    # pool terminates before it has started its target has no span yet (see the README).
    receiver.wait_for_spans(6, timeout=15)
    spans = by_name(receiver.spans)
    assert 1 <= len(spans["multiprocessing.pool.worker"]) <= 2
    root, child = spans[root_name][0], spans["child"][0]
    assert child.parent_span_id == root.span_id
    assert len(spans["work"]) == 3
    assert all(w.parent_span_id == child.span_id for w in spans["work"])
    assert all(w.parent_span_id == child.span_id for w in spans["multiprocessing.pool.worker"])
    return spans


def test_proctrace_run_traces_an_unmodified_script(tmp_path, receiver, method):
    """`proctrace run script.py args`: the whole tree in one trace, with the program's own
    exit status, stdin, stdout and stderr passed through."""
    (tmp_path / "app.py").write_text(SCRIPT)
    proc = _proctrace(["--service-name", "svc", "app.py", method, "4"], tmp_path, receiver.env())
    assert proc.returncode == 4, proc.stderr
    assert proc.stdout.splitlines() == ["pool [0, 2, 4]", "stdin: hello"]
    assert "error line" in proc.stderr
    spans = _check_tree(receiver, "app")
    assert {s.resource["service.name"] for s in receiver.spans} == {"svc"}
    assert spans["child"][0].attributes["proctrace.start_method"] == method


def test_proctrace_run_dash_m_runs_a_module(tmp_path, receiver, method):
    """`proctrace run -m package.module args` runs the module as __main__, traced."""
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tool.py").write_text(SCRIPT)
    proc = _proctrace(["-m", "mypkg.tool", method, "0"], tmp_path, receiver.env())
    assert proc.returncode == 0, proc.stderr
    assert "pool [0, 2, 4]" in proc.stdout
    spans = _check_tree(receiver, "mypkg.tool")
    assert spans["mypkg.tool"][0].resource["service.name"] == "mypkg.tool"


def test_proctrace_run_options_are_validated(tmp_path):
    """A bad option, or a script that does not exist, is one clear error (exit 2) and the
    program never runs."""
    (tmp_path / "app.py").write_text("print('never')")
    proc = _proctrace(["--exporter", "zipkin", "app.py"], tmp_path, {})
    assert proc.returncode == 2
    assert "exporter zipkin is not supported" in proc.stderr
    assert "never" not in proc.stdout
    proc = _proctrace(["missing.py"], tmp_path, {})
    assert proc.returncode == 2 and "can't open file" in proc.stderr


def test_the_installed_proctrace_console_script_runs(tmp_path):
    """The `proctrace` command installed with the package (in the interpreter's scripts
    directory) runs the command line: `proctrace --help` exits 0 and names its subcommands."""
    script = shutil.which("proctrace", path=sysconfig.get_path("scripts"))
    assert script is not None, f"no proctrace script in {sysconfig.get_path('scripts')}"
    proc = subprocess.run(
        [script, "--help"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert all(command in proc.stdout for command in ("run", "view", "send")), proc.stdout
