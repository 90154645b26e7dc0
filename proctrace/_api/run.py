"""``proctrace run``: run an unmodified program with every child process and pool task traced."""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from collections.abc import Sequence

from .._core import config as _config
from .functions import configure, instrument


def _parser() -> argparse.ArgumentParser:
    run = argparse.ArgumentParser(
        prog="proctrace run",
        description=(
            "Run a Python program with every child process and pool task traced, as if "
            "proctrace.instrument() were its first line. Options fall back to the OTEL_* "
            "variables; the program's exit status, stdin, stdout and stderr pass through."
        ),
    )
    run.add_argument("--service-name", help="service name (default: the script or module)")
    run.add_argument("--exporter", help="otlp, console or none (comma-separated for several)")
    run.add_argument("--endpoint", help="OTLP endpoint, e.g. http://localhost:4317")
    run.add_argument("--protocol", choices=_config.PROTOCOLS, help="OTLP protocol")
    run.add_argument("-m", dest="module", metavar="MODULE", help="run a module, as python -m")
    run.add_argument("program", nargs=argparse.REMAINDER, help="script.py [args...]")
    return run


def main(argv: Sequence[str]) -> None:
    parser = _parser()
    ns = parser.parse_args(argv)
    if ns.module is None and not ns.program:
        parser.error("run needs a script or -m MODULE")
    if ns.module is not None:
        name = ns.module
    else:
        name = os.path.splitext(os.path.basename(ns.program[0]))[0]
    try:
        configure(
            service_name=ns.service_name or os.environ.get("OTEL_SERVICE_NAME") or name,
            exporter=ns.exporter,
            endpoint=ns.endpoint,
            protocol=ns.protocol,
        )
    except _config.ConfigurationError as exc:
        parser.exit(2, f"proctrace: {exc}\n")
    instrument()
    if ns.module is None and not os.path.exists(ns.program[0]):
        parser.exit(2, f"proctrace: can't open file {ns.program[0]!r}\n")
    try:
        if ns.module is not None:
            sys.argv = [ns.module, *ns.program]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(ns.module, run_name="__main__", alter_sys=True)
        else:
            script = ns.program[0]
            sys.argv = list(ns.program)
            sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
            runpy.run_path(script, run_name="__main__")
    except BaseException as exc:  # the main span says how the program ended, then it ends so
        from .._starter import run as _starter

        _starter.program_ended(exc)
        raise
