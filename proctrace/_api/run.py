"""``proctrace run``: ``python`` with tracing, for a program nobody changed.

Everything after the script or ``-m MODULE`` goes to the program untouched, as ``python``
would hand it over (``-h`` and ``--`` included); proctrace's own options come before. The
program runs in this process, in a fresh ``__main__`` module, with ``sys.argv``,
``sys.path[0]``, ``__file__`` and ``__spec__`` set as ``python script.py`` or ``python -m``
sets them, and a missing script or module is python's own one-line error and exit status.
"""

from __future__ import annotations

import argparse
import builtins
import io
import os
import runpy
import sys
import types
from collections.abc import Sequence
from typing import Any, NoReturn

from .._core import config as _config
from .._core import fromenv as _env
from .functions import configure, instrument

# proctrace's own options that take a value (``--endpoint URL`` or ``--endpoint=URL``).
_WITH_VALUE = ("--service-name", "--exporter", "--endpoint", "--protocol")
_STDERR = (
    "By default proctrace adds to stderr: a log line per traced child when it starts and when "
    "it ends (process started, process finished or process failed), and, when spans go to the "
    "local trace file, one line at exit naming it. --quiet (or PROCTRACE_QUIET=true) leaves "
    "those out; a warning (a setting proctrace ignored, spans it could not send) is always "
    "printed."
)
# What ``python -m`` calls (also for a directory or zip file given as the script).
_run_module_as_main: Any = runpy._run_module_as_main  # type: ignore[attr-defined]
_RUNPY_MAIN = _run_module_as_main.__code__
# proctrace's own __main__ while the program's runs in its place.
_replaced: list[object] = []


def _parser() -> argparse.ArgumentParser:
    run = argparse.ArgumentParser(
        prog="proctrace run",
        usage=(
            "proctrace run [options] script.py [args ...]\n"
            "       proctrace run [options] -m module [args ...]\n"
            "       proctrace run [options] - [args ...]   (the program on standard input)\n"
            "       proctrace run [options] -- script.py [args ...]"
        ),
        description=(
            "Run a Python program as python would, with every child process and pool task "
            "traced, as if proctrace.instrument() were its first line. Everything after the "
            "script or -m module goes to the program untouched; proctrace's options come "
            "before it and fall back to the OTEL_* and PROCTRACE_* variables. The program's "
            "exit status, stdin and stdout pass through."
        ),
        epilog=_STDERR,
        allow_abbrev=False,
    )
    run.add_argument("--service-name", help="service name (default: the script or module)")
    run.add_argument("--exporter", help="otlp, console or none (comma-separated for several)")
    run.add_argument("--endpoint", help="OTLP endpoint, e.g. http://localhost:4317")
    run.add_argument("--protocol", choices=_config.PROTOCOLS, help="OTLP protocol")
    run.add_argument(
        "-q", "--quiet", action="store_true", default=None,
        help="no proctrace lines on stderr unless something went wrong",
    )
    return run


def split(argv: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """proctrace's own options, the module of ``-m`` (or None), and the program's arguments
    (with ``-m``: those after the module; else the script and its arguments)."""
    args = list(argv)
    options: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return options, None, args[i + 1 :]
        if arg == "-m":
            if i + 1 == len(args):
                return [*options, arg], None, []  # the parser says -m needs a module
            return options, args[i + 1], args[i + 2 :]
        if arg.startswith("-m") and not arg.startswith("--"):  # -mmodule, as python takes it
            return options, arg[2:], args[i + 1 :]
        if not arg.startswith("-") or arg == "-":
            return options, None, args[i:]
        options.append(arg)
        if arg in _WITH_VALUE and i + 1 < len(args):
            options.append(args[i + 1])
            i += 1
        i += 1
    return options, None, []


def main(argv: Sequence[str]) -> None:
    parser = _parser()
    options, module, program = split(argv)
    if options[-1:] == ["-m"]:
        parser.error("argument -m: expected a module")
    ns = parser.parse_args(options)  # -h/--help here is proctrace's; after the program, its own
    if module is None and not program:
        parser.error("run needs a script or -m MODULE")
    if module is not None:
        name = module.removesuffix(".__main__")
    else:
        name = os.path.splitext(os.path.basename(os.path.normpath(program[0])))[0]
    try:
        configure(
            service_name=ns.service_name
            or _env.service_name(os.environ, lambda: name, _env.warn_once),
            exporter=ns.exporter,
            endpoint=ns.endpoint,
            protocol=ns.protocol,
            quiet=ns.quiet,
        )
    except _config.ConfigurationError as exc:
        parser.exit(2, f"proctrace: {exc}\n")
    instrument()
    if module is not None:
        _run_module(module, program)
    else:
        _run_script(program)


def _set_path0(entry: str) -> None:
    """``sys.path[0]`` as python sets it for the program, in place of the one it set for
    proctrace (none with ``-P``/``-I``, and then none for the program either)."""
    if sys.flags.safe_path or not sys.path:
        return
    ours = sys.path[0]
    sys.path[0] = entry
    # Spawn children import proctrace through sys.path: keep ours if proctrace is only there.
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.realpath(ours or ".") == os.path.realpath(here) and not any(
        os.path.realpath(p or ".") == os.path.realpath(here) for p in sys.path
    ):
        sys.path.append(ours)


def _fresh_main(**attributes: Any) -> types.ModuleType:
    """A new ``__main__`` module, as the interpreter makes one, in ``sys.modules``."""
    main = types.ModuleType("__main__")
    main.__dict__.update(__annotations__={}, __builtins__=builtins, **attributes)
    _replaced.append(sys.modules.get("__main__"))
    sys.modules["__main__"] = main
    if "__mp_main__" in sys.modules:  # multiprocessing's alias of __main__, made at its import
        # (proctrace's): the starter unpickles what a spawn child's __main__ defines from it
        sys.modules["__mp_main__"] = main
    return main


def _run_module(module: str, args: list[str]) -> None:
    """``python -m module args``: runpy's own entry point for ``-m`` (its errors and exit
    status included), in a fresh ``__main__``."""
    sys.argv = ["-m", *args]  # as python has it while the module is found
    _set_path0(os.getcwd())
    _fresh_main()
    _program(lambda: _run_module_as_main(module, alter_argv=True), _RUNPY_MAIN)


def _run_script(program: list[str]) -> None:
    """``python script.py args``: a file, or a directory or zip file with ``__main__.py``."""
    sys.argv = list(program)
    path = os.path.join(os.getcwd(), program[0])  # absolute, not normalized: as python does
    from pkgutil import get_importer, read_code

    if get_importer(path) is not None:  # a directory or a zip file: its __main__ module
        _set_path0(path)
        _fresh_main()
        _program(lambda: _run_module_as_main("__main__", alter_argv=False), _RUNPY_MAIN)
        return
    if program[0] == "-":  # the program on standard input, as python reads it
        sys.argv[0] = "-"
        if sys.stdin.isatty():  # python's interactive prompt, as python - on a terminal
            _interactive()
            return
        code = _compiled(sys.stdin.buffer.read(), "<stdin>")
        _set_path0("")
        main = _fresh_main(__file__="<stdin>", __cached__=None, __loader__=_builtin_importer())
        _program(lambda: exec(code, main.__dict__), code)
        return
    try:
        with io.open_code(path) as file:
            code = read_code(file)  # a .pyc file, else None
            if code is None:
                file.seek(0)
                code = _compiled(file.read(), path)
    except OSError as exc:
        _cannot_open(path, exc)
    from importlib.machinery import SourceFileLoader, SourcelessFileLoader

    loader = (SourcelessFileLoader if path.endswith(".pyc") else SourceFileLoader)(
        "__main__", path
    )
    _set_path0(os.path.dirname(os.path.realpath(path)))
    main = _fresh_main(__file__=path, __cached__=None, __loader__=loader)
    _program(lambda: exec(code, main.__dict__), code)


def _interactive() -> None:
    """``python -`` on a terminal: the interactive interpreter, in a fresh ``__main__``."""
    import code

    _set_path0("")
    main = _fresh_main(__loader__=_builtin_importer(), __spec__=None, __package__=None)
    hook = getattr(sys, "__interactivehook__", None)
    if hook is not None:  # readline and its completion, as python sets them up
        hook()
    console = code.InteractiveConsole(main.__dict__)
    banner = (
        f"Python {sys.version} on {sys.platform}\n"
        'Type "help", "copyright", "credits" or "license" for more information.'
    )
    _program(lambda: console.interact(banner=banner, exitmsg=""), console.interact.__code__)


def _builtin_importer() -> Any:
    from importlib.machinery import BuiltinImporter

    return BuiltinImporter


def _compiled(source: bytes, filename: str) -> types.CodeType:
    """The program's code; a syntax error in it printed as python prints it (no frames of
    proctrace's), status 1."""
    try:
        return compile(source, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes (3.11)
        from .._starter import run as _starter

        _starter.program_ended(exc)
        exc.__traceback__ = None
        sys.excepthook(type(exc), exc, None)
        raise SystemExit(1) from None


def _cannot_open(path: str, exc: OSError) -> NoReturn:
    """python's own message and status for a script it cannot open."""
    interpreter = sys.orig_argv[0] if sys.orig_argv else sys.executable
    sys.stderr.write(
        f"{interpreter}: can't open file {path!r}: [Errno {exc.errno}] {exc.strerror}\n"
    )
    raise SystemExit(2)


def _program(run: Any, first: types.CodeType) -> None:
    """Run the program; tell the main span how it ended. An uncaught exception is printed
    by ``sys.excepthook`` from ``first`` on, without proctrace's frames, as python prints
    it, and the status is 1."""
    from .._starter import run as _starter

    try:
        run()
    except Exception as exc:
        _starter.program_ended(exc)
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code is not first:
            tb = tb.tb_next
        if tb is None:  # not the program's: proctrace's own, shown whole
            raise
        exc.__traceback__ = tb
        try:
            sys.excepthook(type(exc), exc, tb)
        except Exception:  # a broken hook: python then prints both
            sys.stderr.write("Error in sys.excepthook:\n")
            sys.__excepthook__(*sys.exc_info())
            sys.stderr.write("\nOriginal exception was:\n")
            sys.__excepthook__(type(exc), exc, tb)
        raise SystemExit(1) from None
    except BaseException as exc:  # SystemExit, KeyboardInterrupt: they end the program so
        _starter.program_ended(exc)
        if isinstance(exc, KeyboardInterrupt):
            _print_interrupt(exc, first)
        raise


def _print_interrupt(exc: KeyboardInterrupt, first: types.CodeType) -> None:
    """Print an uncaught Ctrl-C from the program's first frame on, as python does, and leave
    it out of python's own printing, after which python still dies of SIGINT."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code is not first:
        tb = tb.tb_next
    if tb is None:
        return
    hook = sys.excepthook
    whole = exc.__traceback__
    exc.__traceback__ = tb  # python's hook prints the exception's own
    try:
        hook(type(exc), exc, tb)
    except Exception:  # a broken hook: python's own printing shows it all
        exc.__traceback__ = whole
        return

    def printed(kind: Any, value: Any, traceback: Any) -> None:
        if value is not exc:
            hook(kind, value, traceback)

    sys.excepthook = printed
