"""Where proctrace's time goes: system calls, page faults, agent CPU and the log-line lock.

    python benchmarks/profile.py [--children N] [--tasks N]

Prints the breakdown benchmarks/README.md quotes, each figure traced minus bare:

- system calls per fork child and per pool task (``strace -f -c``, every process of the
  run, the agent included; needs strace), from runs of n and 2n so that what a run
  costs once (interpreter and agent start) cancels out,
- minor page faults per fork child: in the child, and in the parent (after a fork, the
  first write to each page the two share copies it, on whichever side writes),
- the agent's CPU per span (user + system time of the agent process, from /proc), from
  runs of n and 2n pool tasks,
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import VARIANT_TARGETS  # noqa: E402  (the same targets and agent lookup)

from proctrace.testing import OTLPReceiver  # noqa: E402

PROGRAM = '''
import json, multiprocessing, os, resource, sys, time
VARIANT = sys.argv[1]
TRACED = VARIANT == "proctrace"
''' + VARIANT_TARGETS + '''

def agent_cpu_s():
    pid = agent_pid()
    if pid is None:
        return None
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        from proctrace._child import lines
        import multiprocessing.util
        spent = {"lock": 0.0, "line": 0.0, "lines": 0}
        lockf, msg = lines._lockf, lines.write_line

        def timed_lockf(*a):
            t0 = time.perf_counter()
            try:
                return lockf(*a)
            finally:
                spent["lock"] += time.perf_counter() - t0

        def timed_msg(data):
            t0 = time.perf_counter()
            try:
                return msg(data)
            finally:
                spent["line"] += time.perf_counter() - t0
                spent["lines"] += 1

        lines._lockf, lines.write_line = timed_lockf, timed_msg
        main_pid, path = os.getpid(), sys.argv[4]

        def dump():
            if os.getpid() != main_pid and spent["lines"]:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                os.write(fd, (json.dumps(spent) + "\\n").encode())
                os.close(fd)

        # A child drops its parent's finalizers at the fork: each registers its own.
        multiprocessing.util.register_after_fork(
            lines, lambda _: multiprocessing.util.Finalize(None, dump, exitpriority=10)
        )
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
        pool = ctx.Pool(2)
        pool.map(f, range(100), chunksize=1)
        pool.map(f, range(n), chunksize=1)
        time.sleep(0.5)  # the agent handles what is queued
        out["agent_cpu_s"] = agent_cpu_s() if TRACED else None
        pool.close()
        pool.join()
        cpu = lambda r: r.ru_utime + r.ru_stime
        out["main_cpu_s"] = cpu(resource.getrusage(resource.RUSAGE_SELF))
        out["workers_cpu_s"] = cpu(resource.getrusage(resource.RUSAGE_CHILDREN))
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


def marginal(big: dict[str, int], small: dict[str, int], units: int) -> dict[str, float]:
    """Per unit, from two runs ``units`` apart: what the run costs once cancels out."""
    names = set(big) | set(small)
    diff = {n: (big.get(n, 0) - small.get(n, 0)) / units for n in names}
    ordered = sorted(diff.items(), key=lambda kv: -abs(kv[1]))
    return {n: round(v, 2) for n, v in ordered if abs(v) >= 0.05}


def run(argv: list[str], env: dict[str, str], workdir: Path) -> dict[str, Any]:
    proc = subprocess.run(
        argv, env=env, cwd=workdir, check=True, capture_output=True, text=True
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--children", type=int, default=200, help="fork children (200)")
    parser.add_argument("--tasks", type=int, default=20000, help="pool tasks (20000)")
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
        report: dict[str, Any] = {"python": sys.version.split()[0]}
        sizes = {"children": args.children, "tasks": args.tasks}
        if shutil.which("strace"):
            for mode, n in sizes.items():
                calls = {}
                for variant in ("bare", "proctrace"):
                    big, small = (
                        strace_counts([py, str(script), variant, mode, str(k)], env, workdir)
                        for k in (2 * n, n)
                    )
                    calls[variant] = marginal(big, small, n)
                extra = {
                    name: round(calls["proctrace"].get(name, 0) - calls["bare"].get(name, 0), 2)
                    for name in set(calls["proctrace"]) | set(calls["bare"])
                }
                unit = "child" if mode == "children" else "task"
                report[f"syscalls_per_{unit}"] = {
                    "bare": sum(calls["bare"].values()),
                    "proctrace": sum(calls["proctrace"].values()),
                    "added": dict(sorted(
                        ((k, v) for k, v in extra.items() if abs(v) >= 0.05),
                        key=lambda kv: -abs(kv[1]),
                    )),
                }
        faults = {
            v: run([py, str(script), v, "children", str(args.children)], env, workdir)
            for v in ("bare", "proctrace")
        }
        report["faults_per_child"] = {
            side: {v: round(faults[v][f"{side}_faults"], 1) for v in faults}
            for side in ("child", "parent")
        }
        lines = run(
            [py, str(script), "proctrace", "lines", "20", str(workdir / "lock.jsonl")], env, workdir
        )
        report["log_line_16_children_at_once"] = {k: round(v, 1) for k, v in lines.items()}
        # CPU per pool task by process, from runs of n and 2n tasks: the main process, the
        # two workers together, and (traced) the agent; the receiver is this process.
        per_task: dict[str, dict[str, float]] = {}
        for variant in ("bare", "proctrace"):
            small, big = (
                run([py, str(script), variant, "tasks", str(k)], env, workdir)
                for k in (args.tasks, 2 * args.tasks)
            )
            per_task[variant] = {
                key.removesuffix("_cpu_s"): round((big[key] - small[key]) / args.tasks * 1e6, 1)
                for key in ("main_cpu_s", "workers_cpu_s", "agent_cpu_s")
                if big.get(key) is not None and small.get(key) is not None
            }
        report["cpu_us_per_task"] = per_task
        if "agent" in per_task["proctrace"]:
            report["agent_cpu_us_per_span"] = per_task["proctrace"]["agent"]
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
