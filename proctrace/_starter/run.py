"""The run: set up once in the process that starts the first traced child, torn down at exit.

Setting up means: validate settings, open the collector's socket in a private
directory, start the collector (a separate agent process that owns the
exporter, or a thread feeding the application's own SDK provider), open the
main process's span, and make fork and forkserver children cheap by loading
what they will need now. Children only ever talk to the collector.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any, cast

from .._child import run as _child_run
from .._child import span as _span
from .._child import wire as _wire
from .._core import config as _config
from .._core import ids as _ids
from .._core import names, rundir, sampling
from .._core import onimport as _onimport
from .._core.ids import SpanRef, new_id
from . import app_provider as _app
from . import main_span

if TYPE_CHECKING:
    from .._core.records import Finished, ReportRecord
    from .agent_process import AgentProcess

# The agent bounds its own work at exit (_agent.DRAIN_TIMEOUT + EXPORT_DEADLINE, counted
# from when it reads the shutdown record, also if it was still starting up): this is
# only a safety net against an agent that hangs.
AGENT_EXIT_TIMEOUT = 5.0


# The longest path a Unix socket can be bound at (Linux: 108 bytes with the final NUL).
MAX_SOCKET_PATH = 107


def private_directory(prefix: str = names.RUN_PREFIX, holds: str = names.RUN_SOCKET) -> str:
    """A new directory only this user can enter, in the temporary directory: what
    ``tempfile.mkdtemp()`` makes (the same places, tried in the same order), without
    importing ``tempfile`` and the ``shutil``, ``bz2`` and ``lzma`` it loads, which make
    every traced program bigger and each of its fork children slower to start.

    A place where a socket named ``holds`` would have too long a path to bind (a deep
    ``TMPDIR``: a build sandbox's, a test runner's) is passed over for the next."""
    variables = ("TMPDIR", "TEMP", "TMP")
    places = [os.environ[n] for n in variables if os.environ.get(n)]
    places += ["/tmp", "/var/tmp", "/usr/tmp", os.getcwd()]
    error: OSError | None = None
    for place in places:
        longest = os.path.join(os.path.abspath(place), prefix + new_id(6), holds)
        if len(os.fsencode(longest)) > MAX_SOCKET_PATH:
            error = error or OSError(f"{place}: too long a path for a Unix socket")
            continue
        for _ in range(100):
            path = os.path.join(os.path.abspath(place), prefix + new_id(6))
            try:
                os.mkdir(path, 0o700)  # fails if anything is there already: never reused
                return path
            except FileExistsError:
                continue
            except OSError as exc:  # not there, not writable: the next place
                error = exc
                break
    raise error or FileExistsError(f"no new directory could be made for {prefix}*")


class Runtime:
    """State of one run, owned by the process that set it up."""

    def __init__(self, settings: _config.Settings) -> None:
        self.pid = os.getpid()
        self.settings = settings
        self.settings_dict = settings.to_dict()
        _child_run.seed_settings(self.settings_dict, settings)
        self.directory = private_directory()  # mode 0700
        self.socket_path = os.path.join(self.directory, names.RUN_SOCKET)
        self.agent: AgentProcess | None = None
        self.collector_thread: threading.Thread | None = None
        self.collector: Any = None
        self.root: _span.Span | None = None
        self.app_provider: Any = None
        self.app_exit = False  # its shutdown at exit is the run's to do (app_provider)
        self.outcome = main_span.Outcome()

    def start(self) -> None:
        provider = _app.installed()
        if provider is not None:
            self.app_provider = provider
            self.app_exit = self.pid == os.getpid() and _app.take_exit(provider)
            self._start_collector_thread(self._listen(), provider)
        elif sampling.can_sample(self.settings.sampler, self.settings.sampler_ratio):
            self._start_agent(self._listen())
        # else: a sampler that samples nothing (always_off, a ratio of 0). No span of the run
        # can be recorded, so there is no collector: the agent's start alone is ~0.2 s of CPU,
        # on the program's cores. Children still write their log lines; nothing is sent.
        _provide_when_used(self.settings)
        _wire.set_address(self.socket_path)
        _prepare_children()

    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        listener.listen(4096)
        return listener

    def root_ids(self) -> SpanRef:
        """The main process's span, opened the first time a process starts outside any
        span; it ends at exit, so one run is one trace (joining one handed in, if any)."""
        with _lock:
            if self.root is None:
                self.root = main_span.open_span(self.settings, self.pid, self.app_provider)
                _ids.main = (self.root, self.pid)  # for the main program's logging records
                if is_main_program():
                    self.outcome.watch()
            root = self.root
            return SpanRef(root.trace_id, root.span_id, root.sampled)

    def _start_agent(self, listener: socket.socket) -> None:
        from .agent_process import AgentProcess

        try:
            self.agent = AgentProcess(listener.fileno(), self.settings_dict, self.pid)
        except OSError as exc:  # python itself could not be started (not this user's to run)
            why = f"{sys.executable}: {exc.strerror or exc}"
            raise _NoAgent(f"its agent could not be started ({why})") from None
        listener.close()

    def _start_collector_thread(self, listener: socket.socket, provider: Any) -> None:
        from .._agent.collector import Collector
        from .._otel import adapter, convert
        from .._otlp.encoded import decode

        processor = adapter.span_processor(provider)
        resource = provider.resource

        def deliver(record: Finished) -> None:
            if "encoded" in record:  # a pool task's span, already encoded in its worker
                record = decode(record)
            processor.on_end(convert.to_span(record, resource))

        global in_process_collector
        self.collector = Collector(listener, deliver, in_process=True)
        in_process_collector = True
        self.collector_thread = threading.Thread(
            target=self.collector.serve, name="proctrace-collector", daemon=True
        )
        self.collector_thread.start()

    def finish(self) -> None:
        """End the main span, let the collector drain, and clean up; bounded in time."""
        self.outcome.unwatch()
        if self.root is not None:
            self.outcome.end(self.root)
        if self.agent is not None or self.collector_thread is not None:
            _wire.send({"k": "shutdown"})
        _wire.close()
        if self.agent is not None:
            self.agent.finish(AGENT_EXIT_TIMEOUT)
        if self.collector_thread is not None:
            self.collector_thread.join(timeout=AGENT_EXIT_TIMEOUT)
        if self.app_exit:
            _app.shut_down(self.app_provider)
        rundir.remove(self.directory)


def is_main_program() -> bool:
    """True in the program's own process; False in children and while a child imports main."""
    from .._child.run import in_main_program

    return in_main_program()


def prepare_main() -> None:
    """Route the program's API spans and log records through the run from now on, so those
    made before any process starts are recorded too. Only in the main program."""
    if _runtime is not None or not is_main_program():
        return
    try:
        chosen = settings()
    except _config.ConfigurationError:
        return  # reported when the first traced process starts
    if not chosen.disabled:
        _provide_when_used(chosen)


def _provide_when_used(settings: _config.Settings) -> None:
    """Route the program's own API spans and stdlib log records through the run, once it
    imports the OpenTelemetry API or ``logging`` (``_child.follow.follow_program``).

    proctrace's provider then costs nothing until the program asks for a tracer: a
    program that never does never pays for the SDK, and neither do its fork children
    (a smaller parent forks faster).
    """
    from .._child.follow import follow_program

    follow_program(settings, ensure, child=False)


def _prepare_children() -> None:
    """Load what a child needs now: fork children inherit it, the fork server preloads it.

    structlog is not among it: children load it only if the program uses it.
    """
    from .._child import logs, run, usage  # noqa: F401

    usage.prepare()

    # The fork server loads our modules too, once the program uses it: importing
    # multiprocessing.forkserver here would load it (with multiprocessing.connection,
    # .spawn, runpy) into programs that never do, making every fork child slower.
    _onimport.when_imported("multiprocessing.forkserver", _preload_in_fork_server)


def _preload_in_fork_server(forkserver: Any) -> None:
    """Have the fork server, not yet started, load what its children need."""
    try:
        server = forkserver._forkserver
        if getattr(server, "_forkserver_pid", 0) is None:  # not started yet
            # What a child unpickles and runs: its target's stand-in and the wrapper's body
            # (with the child side they import), the decorator its main module imports.
            wanted = [
                "proctrace._hooks.calls", "proctrace._api.decorator", "proctrace._child.run",
                "resource",
            ]
            modules = list(getattr(server, "_preload_modules", ["__main__"]))
            server.set_forkserver_preload(modules + [m for m in wanted if m not in modules])
    except AttributeError:  # pragma: no cover - a multiprocessing without these
        pass


_lock = threading.RLock()
_runtime: Runtime | None = None
_configured: _config.Settings | None = None


def active() -> bool:
    return _runtime is not None and _runtime.pid == os.getpid()


def runtime_here() -> Runtime | None:
    """The run this process set up, if any (without setting one up)."""
    runtime = _runtime
    return runtime if runtime is not None and runtime.pid == _ids.pid() else None


def configure(settings: _config.Settings) -> None:
    global _configured
    with _lock:
        if active():
            raise _config.ConfigurationError(
                "proctrace.configure() must be called before the first traced process starts"
            )
        if _configured is not None and _configured.redact:  # redact= adds names: kept
            settings = settings._replace(
                redact=tuple(dict.fromkeys((*_configured.redact, *settings.redact)))
            )
        _configured = settings


def run_trace_id() -> str | None:
    """The trace id of this run's main span, once it has one."""
    runtime = _runtime
    if runtime is not None and runtime.root is not None:
        return runtime.root.trace_id
    return None


def current_root() -> SpanRef | None:
    """The run's main span, if this process runs one and it is open (never opens it)."""
    runtime = _runtime
    if runtime is None or runtime.root is None or not active():
        return None
    return SpanRef(runtime.root.trace_id, runtime.root.span_id, runtime.root.sampled)


def program_ended(exc: BaseException) -> None:
    """The program is ending with ``exc`` (an exception or SystemExit): tell the main span."""
    runtime = _runtime
    if runtime is not None and active():
        runtime.outcome.failed(exc)


def settings() -> _config.Settings:
    """The settings in force here: configured, or read from the environment, where a bad
    value is one warning line (once per run: children get these in the carrier) and its
    fallback, never an error."""
    return _configured if _configured is not None else _config.resolve()


def ensure() -> Runtime | None:
    """The run's runtime, set up on first use; None when tracing is disabled."""
    global _runtime
    with _lock:
        if _runtime is not None and _runtime.pid == os.getpid():
            return _runtime
        if _runtime is not None and is_main_program():  # a copy made by os.fork() itself
            from .copies import CopyRuntime

            _runtime = cast(Runtime, CopyRuntime(_runtime))
            _schedule_exit()  # multiprocessing runs no finalizer made in another process
            return _runtime
        chosen = settings()
        if chosen.disabled or _unavailable:
            return None
        try:
            runtime = Runtime(chosen)
        except OSError as exc:
            _give_up(f"no private directory for its collector could be made ({exc})")
            return None
        try:
            runtime.start()
        except OSError as exc:
            rundir.remove(runtime.directory)
            why = f"its collector could not listen ({exc})"
            _give_up(str(exc) if isinstance(exc, _NoAgent) else why)
            return None
        _runtime = runtime
        _schedule_exit()
        return runtime


_unavailable = False  # the run could not be set up here: tracing is off, said once


class _NoAgent(OSError):
    """The agent's process could not be started."""


def _give_up(why: str) -> None:
    """The program runs on untraced: tracing must never be what stops it."""
    global _unavailable
    _unavailable = True
    sys.stderr.write(f"proctrace: this run is not traced: {why}\n")


def _schedule_exit() -> None:
    """End the run inside multiprocessing's own exit hook, at its usual place among the
    program's atexit handlers (an atexit handler of the program may be what lets a child
    finish, so the children cannot be joined any earlier).

    That hook runs the finalizers of priority >= 0, terminates daemonic children, joins
    all children, then runs the remaining finalizers: proctrace reports the daemonic
    children's SIGTERM in the first group and ends the run in the last, once every child
    has sent its spans.
    """
    from multiprocessing import util

    # Kept here too: a fork child clears multiprocessing's registry of them, and would
    # otherwise free them there, touching every page they are on.
    _finalizers[:] = [
        util.Finalize(None, _report_daemons, exitpriority=0),
        util.Finalize(None, _at_exit, exitpriority=-(2**31)),
    ]


_finalizers: list[Any] = []
# True once a run of this program has its collector as a thread (the application's own
# provider): join() then waits for the child's span to reach it.
in_process_collector = False


def _report_daemons() -> None:
    """multiprocessing is about to terminate the daemonic children: say so for each."""
    import multiprocessing

    if not active():
        return
    for child in multiprocessing.active_children():
        carrier = getattr(child, names.CARRIER_ATTR, None)
        if (
            child.daemon
            and isinstance(carrier, dict)
            and "span" in carrier
            and carrier.get("sampled", True)
        ):
            record: ReportRecord = {"k": "signal", "span": carrier["span"], "value": 15}
            _wire.send(record)


def wait_delivered(span_id: str, timeout: float) -> None:
    """With an in-process collector (the application's own provider), wait until the process
    span ``span_id`` reached it; programs often shut their provider down right after join()."""
    runtime = _runtime
    if runtime is not None and runtime.collector is not None and active():
        runtime.collector.wait_delivered(span_id, timeout)


def _at_exit() -> None:
    global _runtime
    runtime = _runtime
    if runtime is None or runtime.pid != os.getpid():
        return
    _runtime = None
    runtime.finish()
