"""What every example shares: the ``--method`` option and the closing lines."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import proctrace

METHODS = ("fork", "spawn", "forkserver")
JAEGER_UI = "http://localhost:16686"


def parse_method(
    description: str, argv: Sequence[str] | None, default: str | None = None
) -> str | None:
    """The start method named by ``--method`` (or ``default``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--method",
        choices=METHODS,
        default=default,
        help="multiprocessing start method (default: %(default)s)",
    )
    method: str | None = parser.parse_args(argv).method
    return method


def finish() -> None:
    """Print the trace id, and where to look at the trace."""
    trace_id = proctrace.current_trace_id()
    print(f"trace id: {trace_id}")
    settings = proctrace.settings()
    if "otlp" in settings.exporters:
        print(f"Jaeger: {JAEGER_UI}/trace/{trace_id}")
    if "file" in settings.exporters:
        print("see the process tree: proctrace view  (or: proctrace view --html trace.html)")
