"""What a traced program carries: every module a parent holds makes each of its fork children
slower to start (issue #12), so proctrace loads only what it needs."""

from __future__ import annotations

import json

# Loaded by proctrace before issue #12, each with a measurable cost per fork child.
NOT_LOADED = (
    "inspect", "dataclasses", "tempfile", "shutil", "bz2", "lzma", "hashlib", "datetime",
    "traceback", "multiprocessing.forkserver", "multiprocessing.spawn", "ast", "dis",
    # What only pool or Dask tasks need (loaded by their first task, or by a pool's starter).
    "proctrace._otlp.protobuf", "proctrace._child.announced", "proctrace._hooks.dask_portable",
    "proctrace._child.tasks", "proctrace._child.ring", "mmap",
    # The joblib and Dask hooks (loaded when the program imports joblib or distributed).
    "proctrace._hooks.joblib", "proctrace._hooks.dask", "proctrace._hooks.dask_tasks",
)
# What a fork child's starter prepares it with: no other process loads it.
FORK_PATH = ("proctrace._child.forkplan", "proctrace._child.forkstart", "proctrace._child.forked")


def test_a_traced_fork_program_does_not_load_what_it_does_not_use(run_script, receiver):
    source = """
    import json, multiprocessing, sys
    from proctrace import traced

    @traced
    def work(i):
        return i

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("fork")
        for i in range(2):
            p = ctx.Process(target=work, args=(i,))
            p.start()
            p.join()
        print(json.dumps(sorted(sys.modules)))
    """
    run = run_script(source, env=receiver.env())
    assert run.returncode == 0, run.stderr
    loaded = set(json.loads(run.stdout))
    assert "proctrace._child.forkstart" in loaded
    assert not loaded & set(NOT_LOADED), sorted(loaded & set(NOT_LOADED))
    assert len(receiver.wait_for_spans(3)) == 3


def test_the_fork_server_still_preloads_proctrace_once_the_program_uses_it(run_script, receiver):
    """The preload is set when the program loads multiprocessing.forkserver, before the
    server starts, instead of proctrace importing the module into every program; and it
    holds what a child runs, so no child imports any of it again (every import, per
    process, in ``-X importtime``'s lines: the program and the server, not the children)."""
    source = """
    import multiprocessing, sys
    from proctrace import traced

    @traced
    def work(i):
        return i

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("forkserver")
        for i in range(3):
            p = ctx.Process(target=work, args=(i,))
            p.start()
            p.join()
        from multiprocessing import forkserver
        print(" ".join(forkserver._forkserver._preload_modules))
    """
    run = run_script(source, env={**receiver.env(), "PYTHONPROFILEIMPORTTIME": "1"})
    assert run.returncode == 0, run.stderr
    preloaded = run.stdout.split()
    assert "proctrace._child.run" in preloaded and "__main__" in preloaded
    imported = [line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines()
                if line.startswith("import time:") and "|" in line]
    # (the decorator is left out: loaded by proctrace.__getattr__ through importlib, which
    # importtime does not report)
    for module in ("proctrace._hooks.calls", "proctrace._child.run", "proctrace._hooks.targets"):
        assert imported.count(module) == 2, (module, imported.count(module))
    for module in FORK_PATH:  # the program's at most (it starts no fork child)
        assert imported.count(module) <= 1, (module, imported.count(module))
    assert len(receiver.wait_for_spans(4)) == 4


def test_a_spawn_child_loads_only_what_its_own_span_needs(run_script, receiver):
    """A spawn child imports proctrace anew: not the fork path its starter uses, nor the pool
    tasks', joblib's or Dask's code (a fresh interpreter pays for every module it imports)."""
    source = """
    import json, multiprocessing, sys
    from proctrace import traced

    @traced
    def work(i):
        print(json.dumps(sorted(sys.modules)), flush=True)

    if __name__ == "__main__":
        p = multiprocessing.get_context("spawn").Process(target=work, args=(1,))
        p.start()
        p.join()
    """
    run = run_script(source, env=receiver.env())
    assert run.returncode == 0, run.stderr
    loaded = set(json.loads(run.stdout))
    assert "proctrace._child.run" in loaded  # the child's span was opened here
    unwanted = set(NOT_LOADED + FORK_PATH) - {"multiprocessing.spawn"}  # its own start
    assert not loaded & unwanted, sorted(loaded & unwanted)
    assert len(receiver.wait_for_spans(2)) == 2
