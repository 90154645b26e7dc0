"""A copy of the main program made by ``os.fork()`` itself (not by multiprocessing): the same
run, one more process in it.

The copy inherits the run's state, its agent's socket among it, but does not own the run: it
starts no agent of its own (which made it a second trace) and ends no main span. The first
time it traces something (a process it starts, a traced call) it opens a span of its own,
under the span current in it then (the one current where it was forked, unless the copy
made another one current since), or the run's main span; it ends that span as it exits (its
outcome seen as the main program's is). A copy that leaves by ``os._exit()``
leaves its span open, and the agent ends it as it ends any process's that did not.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from .._child import span as _span
from .._child import wire as _wire
from .._core import config as _config
from .._core import names
from .._core.ids import SpanRef, new_id
from . import main_span


class _Run(Protocol):
    """What a copy takes over from the run it was copied from (``run.Runtime``, or a copy's)."""

    pid: int
    settings: _config.Settings
    settings_dict: dict[str, Any]
    socket_path: str
    directory: str
    root: _span.Span | None


class CopyRuntime:
    """What ``run.ensure()`` gives in a copy: the run's settings and socket, a span of its own."""

    def __init__(self, run: _Run) -> None:
        self.pid = os.getpid()
        self.parent_pid = run.pid
        self.settings, self.settings_dict = run.settings, run.settings_dict
        self.socket_path, self.directory = run.socket_path, run.directory
        self.agent: Any = None
        self.collector_thread: Any = None
        self.collector: Any = None
        self.app_provider: Any = None
        self.outcome = main_span.Outcome()
        self.root: _span.Span | None = None
        # The span current here (where it was forked, mostly), else the run's main span.
        self._under = _span.current_ids() or (
            SpanRef(run.root.trace_id, run.root.span_id, run.root.sampled)
            if run.root is not None
            else None
        )

    def root_ids(self) -> SpanRef:
        """The copy's own span, opened the first time something of it is traced."""
        if self.root is None:
            under = self._under
            self.root = _span.Span(
                _config.default_service_name(),
                under.trace_id if under is not None else new_id(16),
                under.span_id if under is not None else None,
                {
                    names.PID: self.pid,
                    names.PARENT_PID: self.parent_pid,
                    names.PROCESS_NAME: "MainProcess",
                    names.START_METHOD: "os.fork",
                },
                sampled=under.sampled if under is not None else True,
            )
            self.outcome.watch()
        root = self.root
        return SpanRef(root.trace_id, root.span_id, root.sampled)

    def finish(self) -> None:
        """As the copy exits: its span ended with how it ended. The run (the agent, its
        directory) is its owner's to end."""
        self.outcome.unwatch()
        if self.root is not None:
            self.outcome.end(self.root)
        _wire.close()
