"""Resource use on the spans, under every start method, against a real OTLP receiver: each
process span carries what that process alone used (CPU, peak memory, context switches), each
pool task span its own CPU time."""

from __future__ import annotations

from conftest import by_name, settle

MiB = 2**20

PROCESSES = """
import multiprocessing, sys, time
from proctrace import traced

@traced
def burn():
    start = time.process_time()
    while time.process_time() - start < 0.3:
        sum(range(10000))

@traced
def hog():
    block = b"x" * (100 * 2**20)  # written, so resident
    time.sleep(0.05)
    del block

@traced
def idle():
    pass

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    if sys.argv[1] == "forkserver":
        ctx.set_forkserver_preload(["__main__"])
    big = b"x" * (200 * 2**20)  # the starter's peak: a child must not report it as its own
    del big
    for target in (burn, hog, idle):
        p = ctx.Process(target=target)
        p.start(); p.join()
"""


def test_process_spans_carry_their_own_cpu_memory_and_switches(run_script, receiver, method):
    """A child that burns 0.3 s of CPU shows it; one that writes 100 MiB peaks above 100 MiB;
    an idle sibling peaks far below the 200 MiB its starter peaked at (not inherited through
    fork, nor through exec for spawn); the main span carries the starter's own peak."""
    run = run_script(PROCESSES, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 4))
    burn, hog, idle = (spans[n][0].attributes for n in ("burn", "hog", "idle"))
    main = spans["prog"][0].attributes

    assert burn["process.cpu.user_s"] >= 0.2
    assert idle["process.cpu.user_s"] < 0.2
    for attrs in (burn, hog, idle, main):
        assert isinstance(attrs["process.cpu.user_s"], float)
        assert isinstance(attrs["process.cpu.system_s"], float)
        assert attrs["process.cpu.system_s"] >= 0
        assert attrs["process.context_switches.voluntary"] >= 0
        assert attrs["process.context_switches.involuntary"] >= 0
        assert isinstance(attrs["process.memory.peak_bytes"], int)
        assert "proctrace.task.cpu_s" not in attrs
    assert hog["process.memory.peak_bytes"] >= 100 * MiB
    assert idle["process.memory.peak_bytes"] < 64 * MiB
    assert main["process.memory.peak_bytes"] >= 200 * MiB
    assert main["process.cpu.user_s"] < burn["process.cpu.user_s"] + 5  # its own, not a sum


POOL = """
import multiprocessing, sys, time
from proctrace import traced

@traced
def burn():
    start = time.thread_time()
    while time.thread_time() - start < 0.2:
        sum(range(10000))

@traced
def nap():
    time.sleep(0.2)

if __name__ == "__main__":
    pool = multiprocessing.get_context(sys.argv[1]).Pool(2)
    pool.apply(burn)
    pool.apply(nap)
    pool.close(); pool.join()  # the workers end their own spans (terminate(): the agent does)
"""


def test_pool_task_spans_carry_their_own_cpu(run_script, receiver, method):
    """The task that burns CPU shows more than its sleeping sibling; the workers' own spans carry
    process figures, the task spans only the task's."""
    run = run_script(POOL, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 5))  # prog, 2 tasks, 2 workers
    burn, nap = spans["burn"][0].attributes, spans["nap"][0].attributes
    assert burn["proctrace.task.cpu_s"] >= 0.15
    assert 0 <= nap["proctrace.task.cpu_s"] < 0.05
    assert burn["proctrace.task.cpu_s"] > nap["proctrace.task.cpu_s"]
    for task in (burn, nap):
        assert "process.cpu.user_s" not in task and "process.memory.peak_bytes" not in task
    for worker in spans["multiprocessing.pool.worker"]:
        assert "process.cpu.user_s" in worker.attributes
        assert worker.attributes["process.memory.peak_bytes"] > 0
