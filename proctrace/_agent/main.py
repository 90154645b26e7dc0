"""The agent: a separate process that collects a run's spans and exports them.

Started by the traced program at its first traced process, with the listening
socket passed as an inherited descriptor. Keeping the exporter (and its gRPC
channel) here means no process that forks ever holds one, children never wait
on the network, and export work runs on another core.

Usage (internal): ``python -m proctrace._agent FD SETTINGS_JSON OWNER_PID``
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

# At exit the program waits for the agent, which bounds its own work from the moment it
# reads the shutdown record: draining children's connections (0.2 s at most), then
# exporting (0.5 s at most). What could not be sent is in the fallback file before the
# program ends, and a dead backend adds at most 0.7 s to the program's wall time.
DRAIN_TIMEOUT = 0.2
EXPORT_DEADLINE = 0.5


def trace_file_path(directory: str, service: str, owner_pid: int) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime())
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in service) or "trace"
    return os.path.join(directory, f"{safe}-{stamp}-{owner_pid}.jsonl")


def main(argv: list[str]) -> None:
    # Ctrl-C reaches the whole process group; the agent ends when the program does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fd, settings_json, owner = int(argv[0]), argv[1], int(argv[2])

    from opentelemetry.sdk.resources import Resource

    from .._core import config as _config
    from . import collector as _collector
    from . import pipeline as _export

    settings = _config.Settings.from_dict(json.loads(settings_json))
    trace_file = trace_file_path(settings.trace_dir, settings.service_name, owner)
    fallback = trace_file.removesuffix(".jsonl") + "-undelivered.jsonl"
    # OTEL_RESOURCE_ATTRIBUTES and the SDK's own attributes, as any SDK program has.
    resource = dict(Resource.create({"service.name": settings.service_name}).attributes)
    pipeline = _export.Pipeline(_export.build(settings, trace_file, resource), fallback, resource)
    collector = _collector.Collector(
        socket.socket(fileno=fd),
        pipeline.add,
        owner_pid=owner,
        drain_timeout=DRAIN_TIMEOUT,
    )
    collector.serve()
    pipeline.shutdown(EXPORT_DEADLINE)

    traces = ", ".join(collector.trace_ids) or "none"
    if "file" in settings.exporters and collector.delivered:
        _say(
            f"{collector.delivered} spans (trace {traces}) written to "
            f"{_export.relative(trace_file)}; see them with: proctrace view"
        )
    if pipeline.kept:
        kept = _export.relative(fallback)
        _say(
            f"{pipeline.kept} spans could not be sent to {settings.endpoint} "
            f"({'; '.join(pipeline.errors)}); kept in {kept}; "
            f"send them later with: proctrace send {kept}"
        )
    # An exporter stuck on a dead backend must not hold the agent (or the program) up.
    os._exit(0)


def _say(line: str) -> None:
    sys.stderr.write(f"proctrace: {line}\n")
    sys.stderr.flush()

