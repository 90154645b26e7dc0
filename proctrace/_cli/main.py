"""The ``proctrace`` command's parser, and its ``send`` and ``view`` commands.

``proctrace run`` is parsed here for ``--help`` only: running a program means
installing the hooks, which is the API layer's job (``proctrace._api.run``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .._core import config as _config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proctrace", description="See every process a Python program starts."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "run",
        help="run an unmodified program with every child process and pool task traced",
        add_help=False,
    )

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


def _send(ns: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from . import send as _send

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
    from .._view import spans as _view
    from .._view import text as _text

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
        from .._view import html as _html

        with open(ns.html, "w", encoding="utf-8") as out:
            out.write(_html.page(roots, ", ".join(os.path.basename(f) for f in files)))
        print(f"proctrace: wrote {ns.html} ({len(roots)} traces)")
        return
    color = ns.color == "always" or (
        ns.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    )
    for line in _text.render(roots, color=color):
        print(line)


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    ns = parser.parse_args(argv)
    if ns.command == "send":
        _send(ns, parser)
    elif ns.command == "view":
        _view(ns, parser)

