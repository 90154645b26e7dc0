"""Where proctrace's time goes: system calls, page faults, agent CPU and the log-line lock.

    python benchmarks/profile.py [--children N] [--tasks N]

Prints the breakdown benchmarks/README.md quotes, each figure traced minus bare:

- system calls per fork child and per pool task (``strace -f -c``, every process of the
  run, the agent included; needs strace),
- minor page faults per fork child: in the child, and in the parent (after a fork, the
  first write to each page the two share copies it, on whichever side writes),
- the agent's CPU per span (user + system time of the agent process, from /proc, divided
  by the spans it handled),
- time on the log-line lock: the share of a child's two lifecycle lines spent taking and
  releasing the run's lock, with 16 children logging at once.

A real OTLP/gRPC receiver (``proctrace.testing.OTLPReceiver``) runs in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from proctrace.testing import OTLPReceiver  # noqa: E402

PROGRAM = '''
import json, multiprocessing, os, resource, sys, time
TRACED = sys.argv[1] == "proctrace"
if TRACED:
    from proctrace import traced
else:
    def traced(fn):
        return fn


@traced
def work(i):
    return sum(range(1000))


@traced
def f(x):
    return x


def agent_cpu_s():
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as children:
            for pid in children.read().split():
                try:
                    if b"proctrace._agent" not in open(f"/proc/{pid}/cmdline", "rb").read():
                        continue
                    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                except OSError:
                    continue
    return None


if __name__ == "__main__":
    mode, n = sys.argv[2], int(sys.argv[3])
    ctx = multiprocessing.get_context("fork")
    out = {}
    if mode == "children":
        for i in range(3):  # warm-up
            p = ctx.Process(target=work, args=(i,)); p.start(); p.join()
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        s0 = resource.getrusage(resource.RUSAGE_SELF)
        for i in range(n):
            p = ctx.Process(target=work, args=(i,)); p.start(); p.join()
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        s1 = resource.getrusage(resource.RUSAGE_SELF)
        out["child_faults"] = (c1.ru_minflt - c0.ru_minflt) / n
        out["parent_faults"] = (s1.ru_minflt - s0.ru_minflt) / n
    elif mode == "lines":  # n rounds of 16 children at once, timing the lock in each
        from proctrace._child import logs
        import multiprocessing.util
        spent = {"lock": 0.0, "line": 0.0, "lines": 0}
        lockf, msg = logs.fcntl.lockf, logs.LineWriter.msg

        def timed_lockf(*a):
            t0 = time.perf_counter()
            try:
                return lockf(*a)
            finally:
                spent["lock"] += time.perf_counter() - t0

        def timed_msg(self, message):
            t0 = time.perf_counter()
            try:
                return msg(self, message)
            finally:
                spent["line"] += time.perf_counter() - t0
                spent["lines"] += 1

        logs.fcntl.lockf, logs.LineWriter.msg = timed_lockf, timed_msg
        main_pid, path = os.getpid(), sys.argv[4]

        def dump():
            if os.getpid() != main_pid and spent["lines"]:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                os.write(fd, (json.dumps(spent) + "\n").encode())
                os.close(fd)

        multiprocessing.util.Finalize(None, dump, exitpriority=10)
        for r in range(n):
            procs = [ctx.Process(target=work, args=(r * 16 + k,)) for k in range(16)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
        rows = [json.loads(line) for line in open(path)]
        out["lines"] = sum(r["lines"] for r in rows)
        out["lock_us_per_line"] = sum(r["lock"] for r in rows) / out["lines"] * 1e6
        out["write_us_per_line"] = sum(r["line"] for r in rows) / out["lines"] * 1e6
    else:
        with ctx.Pool(2) as pool:
            pool.map(f, range(100), chunksize=1)
            pool.map(f, range(n), chunksize=1)
            time.sleep(0.5)  # the agent handles what is queued
            out["agent_cpu_s"] = agent_cpu_s() if TRACED else None
    print(json.dumps(out))
'''

def strace_counts(argv: list[str], env: dict[str, str], workdir: Path) -> dict[str, int]:
    """System calls of every process of a run, by name (``strace -f -c``)."""
    out = workdir / "strace.txt"
    subprocess.run(
        ["strace", "-f", "-c", "-o", str(out), *argv],
        env=env, cwd=workdir, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    counts: dict[str, int] = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and re.fullmatch(r"[\d.]+", parts[0]) and parts[-1] != "total":
            counts[parts[-1]] = int(parts[3])
    return counts


def per_unit(traced: dict[str, int], bare: dict[str, int], units: int) -> dict[str, float]:
    names = set(traced) | set(bare)
    diff = {n: (traced.get(n, 0) - bare.get(n, 0)) / units for n in names}
    return {n: round(v, 2) for n, v in sorted(diff.items(), key=lambda kv: -abs(kv[1])) if abs(v) >= 0.05}


def run(argv: list[str], env: dict[str, str], workdir: Path) -> dict[str, Any]:
    proc = subprocess.run(
        argv, env=env, cwd=workdir, check=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="proctrace-profile-") as tmp, OTLPReceiver(
        "grpc", keep=False
    ) as receiver:
        workdir = Path(tmp)
        script = workdir / "program.py"
        script.write_text(textwrap.dedent(PROGRAM))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROCTRACE_"))}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        env["PROCTRACE_DIR"] = str(workdir / "files")
        env["PROCTRACE_LOG_FORMAT"] = "json"
        env.update(receiver.env())
        py = sys.executable
        report: dict[str, Any] = {}
        if shutil.which("strace"):
            for mode, n in (("children", args.children), ("tasks", args.tasks)):
                bare = strace_counts([py, str(script), "bare", mode, str(n)], env, workdir)
                traced = strace_counts([py, str(script), "proctrace", mode, str(n)], env, workdir)
                # The run's fixed costs (interpreter, agent start) are divided over n too:
                # small against n children or tasks, but not nothing.
                report[f"syscalls_per_{mode[:-1] if mode == 'children' else 'task'}"] = per_unit(
                    traced, bare, n
                )
        faults = {v: run([py, str(script), v, "children", str(args.children)], env, workdir)
                  for v in ("bare", "proctrace")}
        report["faults_per_child"] = {
            side: {v: round(faults[v][f"{side}_faults"], 1) for v in faults}
            for side in ("child", "parent")
        }
        lines = run(
            [py, str(script), "proctrace", "lines", "20", str(workdir / "lock.jsonl")], env, workdir
        )
        report["log_line"] = {k: round(v, 1) for k, v in lines.items()}
        cpu = run([py, str(script), "proctrace", "tasks", str(args.tasks)], env, workdir)
        spans = args.tasks + 100 + 2 + 1
        if cpu.get("agent_cpu_s") is not None:
            report["agent_cpu_us_per_span"] = round(cpu["agent_cpu_s"] / spans * 1e6, 1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
