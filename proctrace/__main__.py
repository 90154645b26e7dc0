"""The ``proctrace`` command: ``proctrace run [options] script.py|-m module [args...]``."""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from collections.abc import Sequence

from . import _config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proctrace", description="See every process a Python program starts."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run an unmodified program with every child process and pool task traced",
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

    send = commands.add_parser(
        "send",
        help="send spans a run kept in a file because its backend was unreachable",
        description=(
            "Send the spans in FILE (OTLP JSON, one export request per line, as proctrace "
            "writes them) to an OTLP backend; the file is removed once all were accepted. "
            "Options fall back to the OTEL_* variables."
        ),
    )
    send.add_argument("files", nargs="+", metavar="FILE")
    send.add_argument("--endpoint", help="OTLP endpoint, e.g. http://localhost:4317")
    send.add_argument("--protocol", choices=_config.PROTOCOLS, help="OTLP protocol")

    view = commands.add_parser(
        "view",
        help="show the process tree of a run from its local trace files",
        description=(
            "Print each trace as a tree of processes and spans: name, pid, parent pid, start "
            "method, duration, status, exit code and arguments. Without PATH: the newest run "
            "under .proctrace (or PROCTRACE_DIR), its undelivered spans included."
        ),
    )
    view.add_argument("paths", nargs="*", metavar="PATH", help="trace files or directories")
    view.add_argument("--trace", metavar="ID", help="show only this trace (a prefix will do)")
    view.add_argument("--html", metavar="OUT", help="write a self-contained HTML waterfall")
    view.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help="colour the tree"
    )
    return parser


def _run(ns: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    import proctrace

    if ns.module is None and not ns.program:
        parser.error("run needs a script or -m MODULE")
    if ns.module is not None:
        name = ns.module
    else:
        name = os.path.splitext(os.path.basename(ns.program[0]))[0]
    try:
        proctrace.configure(
            service_name=ns.service_name or os.environ.get("OTEL_SERVICE_NAME") or name,
            exporter=ns.exporter,
            endpoint=ns.endpoint,
            protocol=ns.protocol,
        )
    except proctrace.ConfigurationError as exc:
        parser.exit(2, f"proctrace: {exc}\n")
    proctrace.instrument()
    if ns.module is not None:
        sys.argv = [ns.module, *ns.program]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(ns.module, run_name="__main__", alter_sys=True)
    else:
        script = ns.program[0]
        if not os.path.exists(script):
            parser.exit(2, f"proctrace: can't open file {script!r}\n")
        sys.argv = list(ns.program)
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        runpy.run_path(script, run_name="__main__")


def _send(ns: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from . import _send

    try:
        settings = _config.resolve(endpoint=ns.endpoint, protocol=ns.protocol, exporter="otlp")
    except _config.ConfigurationError as exc:
        parser.exit(2, f"proctrace: {exc}\n")
    failed = False
    for path in ns.files:
        try:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"no such file: {path}")
            with open(path, "rb"):
                pass
        except OSError as exc:
            failed = True
            print(f"proctrace: cannot read {path}: {exc}", file=sys.stderr)
            continue
        try:
            sent = _send.send_file(path, settings)
        except Exception as exc:  # the backend said no: keep the file, say why
            failed = True
            print(
                f"proctrace: {path} not sent to {settings.endpoint} "
                f"({_send.describe_error(exc)}); the file is kept",
                file=sys.stderr,
            )
        else:
            print(f"proctrace: sent {sent} spans from {path} to {settings.endpoint}")
    if failed:
        sys.exit(1)


def _view(ns: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from . import _view

    if ns.paths:
        files = _view.expand(ns.paths)
    else:
        directory = os.environ.get("PROCTRACE_DIR") or _config.DEFAULT_TRACE_DIR
        files = _view.default_files(directory)
        if not files:
            parser.exit(1, f"proctrace: no trace files under {directory}\n")
    try:
        roots = _view.trees(_view.read_spans(files))
    except OSError as exc:
        parser.exit(1, f"proctrace: {exc}\n")
    if ns.trace:
        roots = {t: r for t, r in roots.items() if t.startswith(ns.trace.lower())}
        if not roots:
            parser.exit(1, f"proctrace: no trace {ns.trace} in {', '.join(files)}\n")
    if ns.html:
        from . import _html

        with open(ns.html, "w", encoding="utf-8") as out:
            out.write(_html.page(roots, ", ".join(os.path.basename(f) for f in files)))
        print(f"proctrace: wrote {ns.html} ({len(roots)} traces)")
        return
    color = ns.color == "always" or (
        ns.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    )
    for line in _view.render(roots, color=color):
        print(line)


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    ns = parser.parse_args(argv)
    if ns.command == "run":
        _run(ns, parser)
    elif ns.command == "send":
        _send(ns, parser)
    elif ns.command == "view":
        _view(ns, parser)


if __name__ == "__main__":
    main()
