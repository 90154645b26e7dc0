"""The agent: a separate process that collects a run's spans and exports them.

Started by the traced program at its first traced process, with the listening
socket passed as an inherited descriptor. Keeping the exporter (and its gRPC
channel) here means no process that forks ever holds one, children never wait
on the network, and export work runs on another core.

Usage (internal): ``python -P -m proctrace._agent FD OWNER_PID``, the settings as JSON on
standard input (never on the command line, which every local user can read).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

from .._core import names, rundir
from .._core.fromenv import DEFAULT_TRACE_DIR
from .._core.fromenv import public_url as _public_url

# At exit the program waits for the agent, which bounds its own work from the moment it
# reads the shutdown record: draining children's connections (0.2 s at most), then
# exporting (0.5 s at most). What could not be sent is in the fallback file before the
# program ends, and a dead backend adds at most 0.7 s to the program's wall time.
DRAIN_TIMEOUT = 0.2
EXPORT_DEADLINE = 0.5


def trace_file_name(service: str, owner_pid: int) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime())
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in service) or "trace"
    return f"{safe}-{stamp}-{owner_pid}.jsonl"


# Signals a supervisor or a terminal sends the whole process group. The agent outlives them
# (it ends when the program does), and says in the spans it ends which one stopped the group.
GROUP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def main(argv: list[str]) -> None:
    noted: list[int] = []
    for signum in GROUP_SIGNALS:
        signal.signal(signum, lambda received, frame: noted.append(received))
    # Born with these blocked (see _starter/agent_process.py): one that came meanwhile is
    # delivered now, to the handler.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, GROUP_SIGNALS)
    fd, owner = int(argv[0]), int(argv[1])
    relay = int(argv[2]) if len(argv) > 2 else -1  # see _say
    settings_json = sys.stdin.buffer.read()

    from opentelemetry.sdk.resources import Resource

    from .._core import config as _config
    from . import collector as _collector
    from . import pipeline as _export

    settings = _config.Settings.from_dict(json.loads(settings_json))
    from .._otlp import files

    directory = files.DirectoryChoice(settings.trace_dir)
    name = trace_file_name(settings.service_name, owner)
    trace_file = files.TraceFile(directory, name)
    fallback = files.TraceFile(directory, name.removesuffix(".jsonl") + "-undelivered.jsonl")
    # OTEL_RESOURCE_ATTRIBUTES and the SDK's own attributes, as any SDK program has.
    resource = dict(Resource.create({"service.name": settings.service_name}).attributes)
    pipeline = _export.Pipeline(_export.build(settings, trace_file, resource), fallback, resource)
    listener = socket.socket(fileno=fd)
    try:
        address = listener.getsockname()  # the run's directory's socket, removed at the end
    except OSError:
        address = None
    collector = _collector.Collector(
        listener,
        pipeline.add,
        sink_many=pipeline.add_many,
        owner_pid=owner,
        drain_timeout=DRAIN_TIMEOUT,
    )

    def tick() -> None:
        if noted:
            collector.note_group_signal(noted[0])

    collector.on_tick(tick)
    collector.serve()
    pipeline.shutdown(EXPORT_DEADLINE)
    if collector.shutdown_asked and os.getppid() == owner and relay >= 0:
        try:  # never to wait on the pipe: a full one sends the lines to stderr instead
            os.set_blocking(relay, False)
            _relay[0] = relay  # the program waits for the agent, and says these lines itself
        except OSError:
            pass

    traces = ", ".join(collector.trace_ids) or "none"
    moved = f" ({directory.why()})" if directory.why() else ""
    if trace_file.written and not settings.quiet:
        where = _export.relative(trace_file.path or "")
        # A bare `proctrace view` reads ./.proctrace (or PROCTRACE_DIR, if the shell still
        # has it): any other place is named, or the hint would find nothing there.
        here = os.path.realpath(DEFAULT_TRACE_DIR)
        elsewhere = os.path.realpath(os.path.dirname(trace_file.path or "")) != here
        view = f"proctrace view {where}" if moved or elsewhere else "proctrace view"
        _say(
            f"{trace_file.written} spans (trace {traces}) written to {where}{moved}; "
            f"see them with: {view}"
        )
    target = _public_url(settings.endpoint) if settings.endpoint else "the console"
    if pipeline.kept:
        kept = _export.relative(fallback.path or "")
        _say(
            f"{pipeline.kept} spans could not be sent to {target} "
            f"({'; '.join(pipeline.errors)}); kept in {kept}{moved}; "
            f"send them later with: proctrace send {kept}"
        )
    # Never claimed as written: said plainly, whatever --quiet says.
    if pipeline.lost:
        _say(f"{pipeline.lost} spans lost: {pipeline.lost_why}")
    if trace_file.lost:
        _say(f"{trace_file.lost} spans lost: no trace file could be written ({trace_file.error})")
    if fallback.lost:
        _say(
            f"{fallback.lost} spans could not be sent to {target} "
            f"({'; '.join(pipeline.errors)}) and are lost: no file could be written "
            f"({fallback.error})"
        )
    _remove_run_directory(address)
    # An exporter stuck on a dead backend must not hold the agent (or the program) up.
    os._exit(0)


def _remove_run_directory(address: object) -> None:
    """Remove the run's private directory as the agent ends. The program removes it at its
    exit, but a program stopped by a signal (SIGTERM or SIGHUP to its group: ``docker stop``,
    systemd, a closed terminal) never gets there, while the agent outlives it: one directory
    would be left behind per stopped run."""
    if isinstance(address, str) and os.path.basename(address) == names.RUN_SOCKET:
        rundir.remove(os.path.dirname(address))


# A pipe to the program (its descriptor here), for the lines the agent says at the end of a
# run the program ended itself: the program writes them to its stderr as it is then. The
# agent's own stderr is the program's as it was when the agent started, which may have
# been a capture since ended (pytest's, say, for a run begun inside a test).
_relay = [-1]


def _say(line: str) -> None:
    text = f"proctrace: {line}\n"
    if _relay[0] >= 0:
        try:
            os.write(_relay[0], text.encode("utf-8", "backslashreplace"))
            return
        except OSError:  # the program is gone after all: say it here
            _relay[0] = -1
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):  # the terminal is gone (SIGHUP): the files still say it
        pass
