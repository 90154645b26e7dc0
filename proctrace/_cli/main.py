"""The ``proctrace`` command's parser, and its ``send`` and ``view`` commands.

``proctrace run`` is parsed here for ``--help`` only: running a program means
installing the hooks, which is the API layer's job (``proctrace._api.run``).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Sequence

from .._core import config as _config
from .._core.fromenv import public_url as _public_url


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proctrace", description="See every process a Python program starts."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "run",
        help="run a program as python would, with every child process and pool task traced",
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
            "Print each trace as a tree of processes and spans: name, process name, pid, "
            "parent pid, start method, duration, status, exit code, arguments and resource "
            "use; six or more same-name siblings as one line (--all lists them). Without "
            "PATH: the newest run under .proctrace (or PROCTRACE_DIR), its undelivered spans "
            "included. A file that cannot be read is said in one line; exit 1 when nothing "
            "could be read."
        ),
    )
    view.add_argument("paths", nargs="*", metavar="PATH", help="trace files or directories")
    view.add_argument("--trace", metavar="ID", help="show only this trace (a prefix will do)")
    view.add_argument(
        "--html", metavar="OUT",
        help="write a self-contained HTML page: a waterfall, and one lane per process "
        "('-': to standard output)",
    )
    view.add_argument(
        "--all", action="store_true",
        help="list every span (same-name siblings are otherwise summarised in one line)",
    )
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
    shown = _public_url(settings.endpoint or "")  # never its userinfo (a password, often)
    failed = False
    for path in ns.files:
        try:
            if not os.path.isfile(path):
                why = "not a regular file" if os.path.exists(path) else "no such file"
                raise FileNotFoundError(f"{why}: {path}")
            with open(path, "rb"):
                pass
        except OSError as exc:
            failed = True
            print(f"proctrace: cannot read {path}: {exc}", file=sys.stderr)
            continue
        try:
            sent, whole = _send.send_file(path, settings)
            failed = failed or not whole  # lines it could not send: status 1
        except Exception as exc:  # the backend said no: keep the file, say why
            failed = True
            print(
                f"proctrace: {path} not sent to {shown} "
                f"({_send.describe_error(exc)}); the file is kept",
                file=sys.stderr,
            )
        else:
            print(f"proctrace: sent {sent} spans from {path} to {shown}")
    if failed:
        sys.exit(1)


def _check_html_out(path: str, parser: argparse.ArgumentParser) -> None:
    """Refuse to write the page over a file that is not a page this command wrote: ``view
    --html run.jsonl`` (the trace file taken as the page's name) overwrote that trace."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return  # a pipe, a terminal, /dev/stdout: nothing there to lose, nothing to read
        with open(path, "rb") as existing:
            head = existing.read(64)
    except OSError:
        return  # not there, or not readable: its error, if any, comes when it is written
    if head and not head.lstrip().lower().startswith(b"<!doctype html>"):
        parser.exit(
            2,
            f"proctrace: will not write the page over {path}: it is not an HTML page "
            "(--html takes the page's name: proctrace view TRACE... --html OUT.html)\n",
        )


def _view(ns: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Read every path given (or the newest run), say in one line per file what could not be
    read, and exit 1 when nothing could."""
    from .._view import reading as _reading
    from .._view import spans as _spans
    from .._view import text as _text

    if ns.html and ns.html != "-":
        _check_html_out(ns.html, parser)
    if ns.paths:
        reading = _reading.Reading().add(ns.paths)
    else:
        directory = os.environ.get("PROCTRACE_DIR") or _config.DEFAULT_TRACE_DIR
        # The newest run; with --trace, every run there (the one named may be an older one).
        files = [directory] if ns.trace else _reading.default_files(directory)
        if not files:
            parser.exit(1, f"proctrace: no trace files under {directory}\n")
        reading = _reading.Reading().add(files)
    for note in reading.notes:
        print(f"proctrace: {note}", file=sys.stderr)
    if not reading.spans:
        parser.exit(1, "proctrace: no spans could be read\n")
    roots = _spans.trees(reading.spans.values())
    if ns.trace:
        roots = {t: r for t, r in roots.items() if t.startswith(ns.trace.lower())}
        if not roots:
            parser.exit(1, f"proctrace: no trace {ns.trace} in {', '.join(reading.files)}\n")
    if ns.html:
        from .._view import html as _html

        title = ", ".join(os.path.basename(f) for f in reading.files[:5])
        if ns.html == "-":  # the page on standard output, as "-" means to other tools
            sys.stdout.write(_html.page(roots, title))
            return
        try:
            # Readable by this user alone, as the trace files it shows (the same arguments).
            fd = os.open(ns.html, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "w", encoding="utf-8") as out:
                out.write(_html.page(roots, title))
        except OSError as exc:
            parser.exit(1, f"proctrace: cannot write {ns.html}: {exc.strerror or exc}\n")
        count = len(roots)
        print(f"proctrace: wrote {ns.html} ({count} trace{'' if count == 1 else 's'})")
        return
    color = ns.color == "always" or (
        ns.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    )
    try:
        for line in _text.render(roots, color=color, expand_all=ns.all):
            print(line)
    except BrokenPipeError:  # `proctrace view | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    ns = parser.parse_args(argv)
    if ns.command == "send":
        _send(ns, parser)
    elif ns.command == "view":
        _view(ns, parser)

