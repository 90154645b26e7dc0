"""Benchmark proctrace against bare multiprocessing and the hand-written OpenTelemetry recipe.

    python benchmarks/bench.py [--children N] [--rounds R] [--tasks N] [--methods LIST]
                               [--dask] [--quick] [--scale] [--json PATH]

Each (variant, start method) measurement runs in a fresh interpreter on a generated script;
variants alternate round-robin so machine drift cancels. Spans go over OTLP gRPC to a real
receiver (``proctrace.testing.OTLPReceiver``) in this process, which counts what arrived.
See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make the checkout's proctrace importable
    sys.path.insert(0, str(ROOT))

from proctrace.testing import OTLPReceiver  # noqa: E402

METHODS = ("fork", "forkserver", "spawn")
VARIANTS = ("bare", "proctrace", "recipe")
DEFAULT_CHILDREN = {"fork": 30, "forkserver": 30, "spawn": 15}
TARGET_VS_BARE = {"fork": 1.25, "forkserver": 1.5, "spawn": 2.8}  # proctrace/bare, at most
TARGET_VS_RECIPE = 0.5  # proctrace/recipe, at most, every method
TARGET_POOL_EXTRA_US = 15.0  # traced minus bare pool task, microseconds, at most
TARGET_UNSAMPLED_EXTRA_US = 3.0  # the same under OTEL_TRACES_SAMPLER=always_off
TARGET_DASK_EXTRA_US = 50.0  # traced minus bare Dask task (client.map, LocalCluster), at most
TARGETS: dict[str, Any] = {
    "proctrace/bare": TARGET_VS_BARE,
    "proctrace/recipe": TARGET_VS_RECIPE,
    "pool_extra_us_per_task": TARGET_POOL_EXTRA_US,
    "pool_unsampled_extra_us_per_task": TARGET_UNSAMPLED_EXTRA_US,
    "dask_extra_us_per_task": TARGET_DASK_EXTRA_US,
}
RUN_TIMEOUT = 900.0  # seconds one measurement subprocess may take
# Seconds to wait for spans once a run has exited. Its exporters have had their answers by
# then, so this only bounds the wait for spans that are not coming.
SPAN_WAIT = 5.0
SPAN_WAIT_LARGE = 15.0  # for runs of 10000 spans or more

# ---------------------------------------------------------------------------------------------
# The measured programs. Each is written to a file (spawn and forkserver children re-import
# their main module, so ``python -c`` will not do) and prints one JSON line on stdout.
# ---------------------------------------------------------------------------------------------

_TIME_CHILDREN = '''
def time_children(method, warmup, children, target, make_args):
    """Per child: wall seconds of p.start(); p.join(), one child at a time."""
    ctx = multiprocessing.get_context(method)
    seconds = []
    for i in range(warmup + children):
        p = ctx.Process(target=target, args=make_args(i))
        t0 = time.perf_counter()
        p.start()
        p.join()
        seconds.append(time.perf_counter() - t0)
        if p.exitcode != 0:
            raise SystemExit(f"child {i} exited with {p.exitcode}")
    return seconds


def report(method, warmup, seconds):
    print(json.dumps({
        "method": method,
        "warmup_s": seconds[:warmup],
        "child_s": seconds[warmup:],
        "proctrace_loaded": "proctrace" in sys.modules,
    }))
'''

_PROCESS_MAIN = '''
if __name__ == "__main__":
    method, warmup, children = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    report(method, warmup, time_children(method, warmup, children, work, lambda i: (i,)))
'''

BARE_PROCESS = '''"""Bare multiprocessing: proctrace is not imported at all."""
import json
import multiprocessing
import sys
import time


def work(i):
    return sum(range(1000))
''' + _TIME_CHILDREN + _PROCESS_MAIN

PROCTRACE_PROCESS = '''"""proctrace: a @traced target; spans go to OTEL_EXPORTER_OTLP_ENDPOINT."""
import json
import multiprocessing
import sys
import time

from proctrace import traced


@traced
def work(i):
    return sum(range(1000))
''' + _TIME_CHILDREN + _PROCESS_MAIN

RECIPE_PROCESS = '''"""The hand-written OpenTelemetry recipe: a W3C carrier passed as argument."""
import json
import multiprocessing
import sys
import time

from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def make_provider(endpoint, service):
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def work(i, carrier, endpoint, service):
    provider = make_provider(endpoint, service)
    try:
        context = propagate.extract(carrier)
        with provider.get_tracer(__name__).start_as_current_span("work", context=context):
            return sum(range(1000))
    finally:
        provider.shutdown()


def carrier_args(i, endpoint, service):
    carrier = {}
    propagate.inject(carrier)
    return (i, carrier, endpoint, service)
''' + _TIME_CHILDREN + '''
if __name__ == "__main__":
    method, warmup, children = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    endpoint, service = sys.argv[4], sys.argv[5]
    provider = make_provider(endpoint, service)
    trace.set_tracer_provider(provider)
    with trace.get_tracer(__name__).start_as_current_span("main"):
        seconds = time_children(
            method, warmup, children, work, lambda i: carrier_args(i, endpoint, service)
        )
    provider.shutdown()
    report(method, warmup, seconds)
'''

_POOL_MAIN = '''

if __name__ == "__main__":
    method, tasks, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    pool = multiprocessing.get_context(method).Pool(2)
    pool.map(f, range(warmup), chunksize=1)  # workers up and warm; not timed
    t0 = time.perf_counter()
    pool.map(f, range(tasks), chunksize=1)
    wall = time.perf_counter() - t0
    pool.close()
    pool.join()
    print(json.dumps({
        "method": method,
        "tasks": tasks,
        "wall_s": wall,
        "proctrace_loaded": "proctrace" in sys.modules,
    }))
'''

BARE_POOL = '''"""Bare Pool.map: proctrace is not imported at all."""
import json
import multiprocessing
import sys
import time


def f(x):
    return x
''' + _POOL_MAIN

PROCTRACE_POOL = '''"""Pool.map of a @traced function."""
import json
import multiprocessing
import sys
import time

from proctrace import traced


@traced
def f(x):
    return x
''' + _POOL_MAIN

_DASK_MAIN = '''

if __name__ == "__main__":
    workers, tasks, warmup = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, Client(cluster) as client:
        client.gather(client.map(f, range(-warmup, 0)))  # workers up and warm; not timed
        t0 = time.perf_counter()
        client.gather(client.map(f, range(tasks)))
        wall = time.perf_counter() - t0
    print(json.dumps({
        "workers": workers,
        "tasks": tasks,
        "wall_s": wall,
        "proctrace_loaded": "proctrace" in sys.modules,
    }))
'''

BARE_DASK = '''"""Bare Dask: client.map on a LocalCluster of worker processes; no proctrace."""
import json
import sys
import time

from distributed import Client, LocalCluster


def f(x):
    return x
''' + _DASK_MAIN

PROCTRACE_DASK = '''"""The same client.map of a @traced function: a span per task on the workers."""
import json
import sys
import time

from distributed import Client, LocalCluster

from proctrace import traced


@traced
def f(x):
    return x
''' + _DASK_MAIN

# Shared by the scale script here and benchmarks/profile.py's program: the targets, @traced
# or plain by the script's VARIANT ("bare" never imports proctrace), and this run's agent.
VARIANT_TARGETS = '''
if VARIANT == "proctrace":
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


def agent_pid():
    """The pid of this run's proctrace agent (a child of this process), or None."""
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as children:
            for pid in children.read().split():
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                        if b"proctrace._agent" in cmdline.read():
                            return pid
                except OSError:
                    continue
    return None
'''

SCALE = '''"""Scale: many fork children in concurrent batches, then many pool tasks, one run.

argv: children batch tasks variant; the "bare" variant never imports proctrace.
"""
import json
import multiprocessing
import os
import sys
import time

VARIANT = sys.argv[4]
''' + VARIANT_TARGETS + '''

def peak_mib(pid="self"):
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec, so it
    # would report the benchmark process's size.
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def agent_peak_mib():
    """The peak RSS so far of this run's proctrace agent."""
    pid = agent_pid()
    return peak_mib(pid) if pid else None


if __name__ == "__main__":
    children, batch, tasks = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    ctx = multiprocessing.get_context("fork")
    t0 = time.perf_counter()
    for first in range(0, children, batch):
        last = min(first + batch, children)
        procs = [ctx.Process(target=work, args=(i,)) for i in range(first, last)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            if p.exitcode != 0:
                raise SystemExit(f"child exited with {p.exitcode}")
    t1 = time.perf_counter()
    pool = ctx.Pool(2)
    t2 = time.perf_counter()
    pool.map(f, range(tasks), chunksize=1)
    t3 = time.perf_counter()
    pool.close()
    pool.join()
    t4 = time.perf_counter()
    print(json.dumps({
        "children_s": t1 - t0,
        "pool_map_s": t3 - t2,
        "pool_total_s": t4 - t1,
        "script_s": t4 - t0,
        "peak_rss_mib": peak_mib(),
        "agent_peak_rss_mib": agent_peak_mib() if VARIANT == "proctrace" else None,
        "proctrace_loaded": "proctrace" in sys.modules,
    }))
'''

SCRIPTS = {
    "bare": BARE_PROCESS,
    "proctrace": PROCTRACE_PROCESS,
    "recipe": RECIPE_PROCESS,
    "pool-bare": BARE_POOL,
    "pool-proctrace": PROCTRACE_POOL,
    "scale": SCALE,
    "scale-bare": SCALE,
    "dask-bare": BARE_DASK,
    "dask-proctrace": PROCTRACE_DASK,
}


# ---------------------------------------------------------------------------------------------
# Running the programs
# ---------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What one measurement subprocess printed, its wall time, and what the receiver got."""

    data: dict[str, Any]
    wall_s: float
    spans: dict[str, Any] | None


def script_name(name: str) -> str:
    """File name of a measured program; never shadows a module it imports."""
    return f"bench_{name.replace('-', '_')}.py"


class Bench:
    """Owns the receiver, the temporary directory with the scripts, and the subprocess env."""

    def __init__(self, receiver: OTLPReceiver, workdir: Path, stderr_pipe: bool = True) -> None:
        """Write the scripts into ``workdir`` and prepare the environment for runs."""
        self.receiver = receiver
        self.stderr_pipe = stderr_pipe
        self.workdir = workdir
        self.runs = 0
        for name, source in SCRIPTS.items():
            (workdir / script_name(name)).write_text(textwrap.dedent(source))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROCTRACE_"))}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        env["PROCTRACE_DIR"] = str(workdir / "proctrace-files")
        self.env = env

    def run(
        self,
        script: str,
        args: list[str],
        expected_spans: int | None,
        extra_env: dict[str, str] | None = None,
    ) -> RunResult:
        """Run one script in a fresh interpreter; count its spans when ``expected_spans``."""
        self.runs += 1
        service = f"bench-{script}-{self.runs}"
        env = dict(self.env, OTEL_SERVICE_NAME=service)
        if script in ("proctrace", "pool-proctrace", "dask-proctrace", "scale"):
            env.update(self.receiver.env())
            env["PROCTRACE_LOG_FORMAT"] = "json"
        env.update(extra_env or {})
        if script == "recipe":
            args = [*args, self.receiver.endpoint, service]
        path = self.workdir / script_name(script)
        stderr_path = self.workdir / "stderr.txt"
        self.receiver.clear()
        t0 = time.perf_counter()
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, str(path), *args],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                # A pipe read as it comes (communicate()), as a terminal or a log shipper
                # reads a real program's stderr; or a file.
                stderr=subprocess.PIPE if self.stderr_pipe else stderr,
            )
            out, err = proc.communicate(timeout=RUN_TIMEOUT)
            if err:
                stderr.write(err)
        stdout = out.decode(errors="replace")
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not stdout.strip():
            tail = stderr_path.read_text(errors="replace")[-3000:]
            raise SystemExit(
                f"bench: {script} {' '.join(args)} exited with {proc.returncode}\n{tail}"
            )
        data = json.loads(stdout.strip().splitlines()[-1])
        if script.split("-")[-1] == "bare" and data["proctrace_loaded"]:
            raise SystemExit(f"bench: the {script} program imported proctrace")
        spans = None
        if expected_spans is not None:
            timeout = SPAN_WAIT if expected_spans < 10_000 else SPAN_WAIT_LARGE
            spans = self._count_spans(service, expected_spans, timeout)
            spans["counted_after_exit_s"] = round(time.perf_counter() - t0 - wall, 3)
            if spans["status"] != "ok":
                spans["stderr_notes"] = stderr_notes(stderr_path)
                spans["kept_undelivered"] = count_undelivered(
                    Path(self.env["PROCTRACE_DIR"]), service
                )
        stderr_path.unlink()
        return RunResult(data, wall, spans)

    def _count_spans(self, service: str, expected: int, timeout: float) -> dict[str, Any]:
        """Wait up to ``timeout`` for ``expected`` spans of ``service`` and say what arrived."""
        try:
            self.receiver.wait_for_spans(expected, timeout=timeout)
        except AssertionError:
            pass
        names = Counter(
            {name: n for (svc, name), n in self.receiver.counts.items() if svc == service}
        )
        got = sum(names.values())
        counted: dict[str, Any] = {
            "expected": expected,
            "received": got,
            "status": span_status(expected, got),
        }
        if got != expected:
            counted["received_by_name"] = dict(names)
        return counted


def count_undelivered(directory: Path, service: str) -> int:
    """Spans proctrace kept in its ``*-undelivered.jsonl`` file (OTLP JSON) for ``service``."""
    count = 0
    for path in directory.glob(f"{service}-*-undelivered.jsonl"):
        with open(path) as lines:
            for line in lines:
                request = json.loads(line)
                for resource_spans in request.get("resourceSpans", ()):
                    for scope_spans in resource_spans.get("scopeSpans", ()):
                        count += len(scope_spans.get("spans", ()))
    return count


def stderr_notes(path: Path, limit: int = 20) -> list[str]:
    """A run's stderr lines that are not proctrace's JSON logs (agent messages, warnings)."""
    notes: list[str] = []
    with open(path, errors="replace") as lines:
        for line in lines:
            if line.strip() and not line.startswith("{"):
                notes.append(line.rstrip()[:500])
                if len(notes) == limit:
                    break
    return notes


def span_status(expected: int, received: int) -> str:
    """``ok``, ``missing N`` or ``extra N``."""
    if received == expected:
        return "ok"
    if received < expected:
        return f"missing {expected - received}"
    return f"extra {received - expected}"


def overall_span_status(runs: list[dict[str, Any]]) -> str:
    """One status over several runs: ``ok`` only when every run got exactly what it expected."""
    expected = sum(r["expected"] for r in runs)
    received = sum(r["received"] for r in runs)
    if all(r["status"] == "ok" for r in runs):
        return "ok"
    return span_status(expected, received) if expected != received else "mismatch"


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    """Where the figures come from."""
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


# ---------------------------------------------------------------------------------------------
# The default benchmark
# ---------------------------------------------------------------------------------------------


def median_ms(seconds: list[float]) -> float:
    """Median of a list of seconds, in milliseconds."""
    return statistics.median(seconds) * 1000


def run_benchmark(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """Round-robin over methods and variants, then the pool pair, ``args.rounds`` times."""
    methods: list[str] = args.methods
    children = {m: args.children or DEFAULT_CHILDREN[m] for m in methods}
    raw: dict[str, dict[str, list[RunResult]]] = {m: {v: [] for v in VARIANTS} for m in methods}
    pool_raw: dict[str, list[RunResult]] = {"bare": [], "proctrace": [], "unsampled": []}
    pool_warmup = min(100, args.tasks)
    dask_raw: dict[str, list[RunResult]] = {"bare": [], "proctrace": []}
    dask_warmup = min(100, args.dask_tasks)
    for rnd in range(1, args.rounds + 1):
        for method in methods:
            argv = [method, str(args.warmup), str(children[method])]
            expected = args.warmup + children[method] + 1  # children and the main/parent span
            for variant in VARIANTS:
                result = bench.run(variant, argv, None if variant == "bare" else expected)
                raw[method][variant].append(result)
                spans = f", spans {result.spans['status']}" if result.spans else ""
                log(
                    f"round {rnd}/{args.rounds} {method:10} {variant:9} "
                    f"median {median_ms(result.data['child_s']):8.2f} ms{spans}"
                )
        # The pool's runs are short and vary by several µs from run to run (more than the
        # always_off target): each round has --pool-repeats of them, alternating.
        for variant in ("bare", "proctrace", "unsampled") * args.pool_repeats:
            argv = [args.pool_method, str(args.tasks), str(pool_warmup)]
            # task spans (warm-up included), the two workers' spans, the main span
            expected = pool_warmup + args.tasks + 2 + 1
            if variant == "unsampled":  # traced, with a sampler that drops the trace
                result = bench.run(
                    "pool-proctrace", argv, None, {"OTEL_TRACES_SAMPLER": "always_off"}
                )
            else:
                result = bench.run(
                    f"pool-{variant}", argv, None if variant == "bare" else expected
                )
            pool_raw[variant].append(result)
            spans = f", spans {result.spans['status']}" if result.spans else ""
            us = result.data["wall_s"] / args.tasks * 1e6
            log(f"round {rnd}/{args.rounds} pool       {variant:9} {us:8.2f} us/task{spans}")
        for variant in ("bare", "proctrace") if args.dask else ():
            argv = [str(args.dask_workers), str(args.dask_tasks), str(dask_warmup)]
            # task spans (warm-up included), the workers' process spans, the main span
            expected = dask_warmup + args.dask_tasks + args.dask_workers + 1
            result = bench.run(f"dask-{variant}", argv, None if variant == "bare" else expected)
            dask_raw[variant].append(result)
            spans = f", spans {result.spans['status']}" if result.spans else ""
            us = result.data["wall_s"] / args.dask_tasks * 1e6
            log(f"round {rnd}/{args.rounds} dask       {variant:9} {us:8.2f} us/task{spans}")

    processes: dict[str, Any] = {}
    for method in methods:
        entry: dict[str, Any] = {"children_per_run": children[method]}
        for variant in VARIANTS:
            results = raw[method][variant]
            run_medians = [median_ms(r.data["child_s"]) for r in results]
            entry[variant] = {
                "median_ms": statistics.median(run_medians),
                "run_medians_ms": run_medians,
                "children_ms": [[s * 1000 for s in r.data["child_s"]] for r in results],
                "warmup_ms": [[s * 1000 for s in r.data["warmup_s"]] for r in results],
                "run_wall_s": [r.wall_s for r in results],
            }
            if variant != "bare":
                runs = [r.spans for r in results if r.spans is not None]
                entry[variant]["spans"] = overall_span_status(runs)
                entry[variant]["span_runs"] = runs
        bare, traced, recipe = (entry[v]["median_ms"] for v in VARIANTS)
        entry["ratios"] = {"proctrace/bare": traced / bare, "proctrace/recipe": traced / recipe}
        entry["overhead_ms"] = traced - bare
        processes[method] = entry

    pool: dict[str, Any] = {
        "method": args.pool_method,
        "workers": 2,
        "tasks": args.tasks,
        "warmup_tasks": pool_warmup,
    }
    for variant, results in pool_raw.items():
        per_run = [r.data["wall_s"] / args.tasks * 1e6 for r in results]
        pool[variant] = {
            "us_per_task": statistics.median(per_run),
            "run_us_per_task": per_run,
            "run_wall_s": [r.wall_s for r in results],
        }
        if variant == "proctrace":
            runs = [r.spans for r in results if r.spans is not None]
            pool[variant]["spans"] = overall_span_status(runs)
            pool[variant]["span_runs"] = runs
    pool["difference_us"] = pool["proctrace"]["us_per_task"] - pool["bare"]["us_per_task"]
    pool["unsampled_difference_us"] = (
        pool["unsampled"]["us_per_task"] - pool["bare"]["us_per_task"]
    )
    results: dict[str, Any] = {"processes": processes, "pool": pool}
    if args.dask:
        dask: dict[str, Any] = {
            "workers": args.dask_workers,
            "threads_per_worker": 1,
            "tasks": args.dask_tasks,
            "warmup_tasks": dask_warmup,
        }
        for variant, results_ in dask_raw.items():
            per_run = [r.data["wall_s"] / args.dask_tasks * 1e6 for r in results_]
            dask[variant] = {
                "us_per_task": statistics.median(per_run),
                "run_us_per_task": per_run,
                "run_wall_s": [r.wall_s for r in results_],
            }
            if variant == "proctrace":
                runs = [r.spans for r in results_ if r.spans is not None]
                dask[variant]["spans"] = overall_span_status(runs)
                dask[variant]["span_runs"] = runs
        dask["difference_us"] = dask["proctrace"]["us_per_task"] - dask["bare"]["us_per_task"]
        results["dask"] = dask
    return results


def against(value: float, target: float, digits: int = 2, sign: str = "") -> str:
    """A figure with its target and whether it is met, e.g. ``1.10 (<= 1.25 ok)``."""
    mark = "ok" if value <= target else "MISSED"
    return f"{value:{sign}.{digits}f} (<= {target:{sign}g} {mark})"


def print_tables(results: dict[str, Any], args: argparse.Namespace) -> None:
    """The medians and ratios, with the targets alongside."""
    processes, pool = results["processes"], results["pool"]
    print(
        f"Per child: wall ms of p.start(); p.join(), median over a run's children, median of "
        f"{args.rounds} round(s); {args.warmup} warm-up child(ren) per run not counted"
    )
    header = (
        f"{'method':<11}{'n':>4}{'bare ms':>10}{'proctrace ms':>14}{'recipe ms':>11}  "
        f"{'proctrace/bare':<23}{'proctrace/recipe':<23}spans proctrace/recipe"
    )
    print(header)
    print("-" * len(header))
    for method, e in processes.items():
        ratios = e["ratios"]
        print(
            f"{method:<11}{e['children_per_run']:>4}{e['bare']['median_ms']:>10.2f}"
            f"{e['proctrace']['median_ms']:>14.2f}{e['recipe']['median_ms']:>11.2f}  "
            f"{against(ratios['proctrace/bare'], TARGET_VS_BARE[method]):<23}"
            f"{against(ratios['proctrace/recipe'], TARGET_VS_RECIPE, 3):<23}"
            f"{e['proctrace']['spans']}/{e['recipe']['spans']}"
        )
    print()
    print(
        f"Pool({pool['workers']}).map(f, range({pool['tasks']}), chunksize=1) under "
        f"{pool['method']}: wall of the map / tasks, median of {args.rounds} round(s) x "
        f"{args.pool_repeats} run(s)"
    )
    header = f"{'':<11}{'bare us/task':>14}{'traced us/task':>16}  {'difference':<24}spans"
    print(header)
    print("-" * len(header))
    diff = against(pool["difference_us"], TARGET_POOL_EXTRA_US, sign="+")
    print(
        f"{'pool':<11}{pool['bare']['us_per_task']:>14.2f}"
        f"{pool['proctrace']['us_per_task']:>16.2f}  {diff:<24}{pool['proctrace']['spans']}"
    )
    diff = against(pool["unsampled_difference_us"], TARGET_UNSAMPLED_EXTRA_US, sign="+")
    print(
        f"{'always_off':<11}{pool['bare']['us_per_task']:>14.2f}"
        f"{pool['unsampled']['us_per_task']:>16.2f}  {diff:<24}none exported"
    )
    dask = results.get("dask")
    if dask is None:
        return
    print()
    print(
        f"Dask client.map(f, range({dask['tasks']})) on LocalCluster(n_workers="
        f"{dask['workers']}, threads_per_worker=1, processes=True): wall of the map / tasks, "
        f"median of {args.rounds} round(s)"
    )
    header = f"{'':<11}{'bare us/task':>14}{'traced us/task':>16}  {'difference':<24}spans"
    print(header)
    print("-" * len(header))
    diff = against(dask["difference_us"], TARGET_DASK_EXTRA_US, sign="+")
    print(
        f"{'dask':<11}{dask['bare']['us_per_task']:>14.2f}"
        f"{dask['proctrace']['us_per_task']:>16.2f}  {diff:<24}{dask['proctrace']['spans']}"
    )


# ---------------------------------------------------------------------------------------------
# The scale scenario
# ---------------------------------------------------------------------------------------------


def run_scale(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """``scale_children`` fork children in batches, then the pool tasks: bare, then proctrace
    (every span counted), ``scale_rounds`` times."""
    expected = args.scale_children + args.scale_tasks + 2 + 1  # + pool workers + main span
    argv = [str(args.scale_children), str(args.scale_batch), str(args.scale_tasks)]
    log(
        f"scale: {args.scale_children} fork children in batches of {args.scale_batch}, "
        f"then {args.scale_tasks} pool tasks; bare and proctrace, {args.scale_rounds} round(s)"
    )
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "proctrace": []}
    for round_no in range(args.scale_rounds):
        for variant in ("bare", "proctrace"):
            log(f"  round {round_no + 1}: {variant}")
            script = "scale" if variant == "proctrace" else "scale-bare"
            result = bench.run(
                script, [*argv, variant], expected if variant == "proctrace" else None
            )
            data = dict(result.data)
            data.update(
                pool_us_per_task=data["pool_map_s"] / args.scale_tasks * 1e6,
                child_ms=data["children_s"] / args.scale_children * 1000,
                run_wall_s=result.wall_s,
                spans=result.spans,
            )
            runs[variant].append(data)
    return {
        "scale": {
            "children": args.scale_children,
            "batch": args.scale_batch,
            "tasks": args.scale_tasks,
            "runs": runs,
        }
    }


def _spread(values: list[float], fmt: str) -> str:
    """The median, with the range over the runs when there are several."""
    median = statistics.median(values)
    if len(values) == 1:
        return format(median, fmt)
    return f"{format(median, fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def print_scale(results: dict[str, Any]) -> None:
    """The scale scenario's figures: bare and proctrace, medians over the runs (range)."""
    s = results["scale"]
    bare, traced = s["runs"]["bare"], s["runs"]["proctrace"]
    rows = [
        (f"{s['children']} fork children, {s['batch']} at a time: s", "children_s", ".2f"),
        ("  ms per child", "child_ms", ".3f"),
        (f"Pool(2).map, {s['tasks']} tasks, chunksize=1: s", "pool_map_s", ".2f"),
        ("  us per task", "pool_us_per_task", ".2f"),
        ("script total (children + pool incl. startup/join): s", "script_s", ".2f"),
        ("run wall (interpreter start to exit, incl. flush): s", "run_wall_s", ".2f"),
        ("main process peak RSS (VmHWM): MiB", "peak_rss_mib", ".1f"),
        ("agent peak RSS (VmHWM, at the script's end): MiB", "agent_peak_rss_mib", ".1f"),
    ]
    print(
        f"Scale: median over {len(traced)} run(s) (range); proctrace exports OTLP gRPC to a "
        "loopback receiver"
    )
    width = max(len(label) for label, _, _ in rows) + 2
    print(f"{'':<{width}}{'bare':<26}{'proctrace':<26}proctrace/bare")
    for label, key, fmt in rows:
        b = [r[key] for r in bare if r.get(key) is not None]
        t = [r[key] for r in traced if r.get(key) is not None]
        ratio = "-"
        if b and t and "rss" not in key:
            ratio = f"{statistics.median(t) / statistics.median(b):.2f}x"
        shown_b = _spread(b, fmt) if b else "-"
        shown_t = _spread(t, fmt) if t else "-"
        print(f"{label:<{width}}{shown_b:<26}{shown_t:<26}{ratio}")
    for spans in (r["spans"] for r in traced):
        print(
            f"spans delivered: {spans['status']} ({spans['received']}/{spans['expected']}, "
            f"counted {spans['counted_after_exit_s']:.2f} s after exit)"
        )
        if spans["status"] != "ok":
            print(f"received by span name: {spans.get('received_by_name')}")
            print(f"kept in proctrace's undelivered file: {spans.get('kept_undelivered')}")
            for note in spans.get("stderr_notes", []):
                print(f"  stderr: {note}")


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(
        description="Per-child and per-task cost of proctrace vs bare multiprocessing "
        "and the hand-written OpenTelemetry recipe."
    )
    parser.add_argument(
        "--children", type=int, default=None,
        help="measured children per run (default: 30 fork/forkserver, 15 spawn)",
    )
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured children first (2)")
    parser.add_argument("--rounds", type=int, default=3, help="round-robin rounds (3)")
    parser.add_argument("--tasks", type=int, default=20_000, help="pool tasks per run (20000)")
    parser.add_argument(
        "--methods", default=",".join(METHODS),
        help="comma-separated start methods (fork,forkserver,spawn)",
    )
    parser.add_argument("--pool-method", default="fork", help="start method of the pool (fork)")
    parser.add_argument(
        "--pool-repeats", type=int, default=3,
        help="pool runs of each variant per round (3): the median is over rounds x repeats",
    )
    parser.add_argument(
        "--quick", action="store_true",
        help="tiny sizes for tests: 3 children, 1 warm-up, 1 round, 200 tasks; with "
        "distributed installed, also the Dask pair with 100 tasks",
    )
    parser.add_argument(
        "--dask", action="store_true",
        help="also measure a Dask task, bare and traced (needs distributed; adds about a "
        "minute)",
    )
    parser.add_argument("--dask-tasks", type=int, default=2000, help="Dask tasks per run (2000)")
    parser.add_argument(
        "--dask-workers", type=int, default=2, help="LocalCluster worker processes (2)"
    )
    parser.add_argument(
        "--scale", action="store_true",
        help="run the scale scenario instead: 10000 fork children (100 at a time) and "
        "1000000 pool tasks, bare and proctrace",
    )
    parser.add_argument(
        "--scale-children", type=int, default=10_000, help="--scale: fork children (10000)"
    )
    parser.add_argument(
        "--scale-batch", type=int, default=100, help="--scale: children started at a time (100)"
    )
    parser.add_argument(
        "--scale-tasks", type=int, default=1_000_000, help="--scale: pool tasks (1000000)"
    )
    parser.add_argument(
        "--scale-rounds", type=int, default=1, help="--scale: bare/proctrace pairs (1)"
    )
    parser.add_argument(
        "--stderr", choices=("pipe", "file"), default="pipe",
        help="where the measured programs' stderr (proctrace's log lines) goes: a pipe this "
        "process reads, as a real program's stderr often is (default), or a file",
    )
    parser.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks" / "results.json",
        help="where to write all results (benchmarks/results.json)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.children, args.warmup, args.rounds, args.tasks = 3, 1, 1, 200
        args.pool_repeats = 1
        if importlib.util.find_spec("distributed") is not None:
            args.dask, args.dask_tasks = True, 100
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(args.methods) - set(METHODS)
    if unknown or not args.methods:
        parser.error(f"--methods takes a subset of {','.join(METHODS)}")
    for name in (
        "children", "rounds", "tasks", "pool_repeats", "dask_tasks", "dask_workers",
        "scale_children", "scale_batch", "scale_tasks", "scale_rounds",
    ):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or the scale scenario), print the tables and write the JSON."""
    args = parse_args(argv)
    started = time.perf_counter()
    # The receiver stands for a backend on another machine: it counts what arrives without
    # decoding it into Python objects, so its own cost on this machine's cores stays small.
    with tempfile.TemporaryDirectory(prefix="proctrace-bench-") as tmp, OTLPReceiver(
        "grpc", keep=False
    ) as receiver:
        bench = Bench(receiver, Path(tmp), stderr_pipe=args.stderr == "pipe")
        if args.scale:
            results = run_scale(bench, args)
            parameters: dict[str, Any] = {
                "scenario": "scale",
                "children": args.scale_children,
                "batch": args.scale_batch,
                "tasks": args.scale_tasks,
                "rounds": args.scale_rounds,
                "stderr": args.stderr,
                "start_method": "fork",
                "pool_workers": 2,
            }
        else:
            results = run_benchmark(bench, args)
            parameters = {
                "scenario": "default",
                "methods": args.methods,
                "children": {m: args.children or DEFAULT_CHILDREN[m] for m in args.methods},
                "warmup": args.warmup,
                "rounds": args.rounds,
                "tasks": args.tasks,
                "pool_method": args.pool_method,
                "pool_repeats": args.pool_repeats,
                "dask": args.dask,
                "quick": args.quick,
                "stderr": args.stderr,
            }
    elapsed = time.perf_counter() - started
    output = {
        "machine": machine_info(),
        "parameters": parameters,
        "targets": TARGETS,
        **results,
        "elapsed_s": elapsed,
        "bench_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.scale:
        print_scale(results)
    else:
        print_tables(results, args)
    print(f"\n{elapsed:.1f} s; results in {args.json}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(output, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
