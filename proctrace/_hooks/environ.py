"""Traces handed on: a program started by ``subprocess`` or ``os.exec*`` from a traced process
gets ``TRACEPARENT`` (and ``TRACESTATE``) in its environment, naming the span current where it
was started, unless the program chose its own value.

That is the OpenTelemetry specification's environment carrier: a traced Python program it
runs (``proctrace run``, or any program using proctrace) continues the same trace. The
patches are installed when the program imports ``subprocess``; ``os.execv``/``os.execve``
(which every ``os.exec*`` function calls) at once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from .._child import span as _span
from .._core import names, onimport
from .._core.ids import parse_traceparent, traceparent
from . import registry

_active = False
# The TRACEPARENT this process was started with: one the program did not set itself.
_HANDED_IN = os.environ.get("TRACEPARENT")


def _current() -> str | None:
    """The current span, else this process's own span or the run's main span, if any (a
    program started before any traced process does not start the run)."""
    ref = _span.current_ids()
    if ref is None:
        from .._starter import carrier as _carrier  # only when a program is being started
        from .._starter import run as _run

        here = _carrier.inherited()
        ref = parse_traceparent(here["traceparent"]) if here else _run.current_root()
    return traceparent(*ref) if ref is not None else None


def _program_chose(env: Mapping[Any, Any]) -> bool:
    value = None
    for key, found in env.items():
        if key in ("TRACEPARENT", b"TRACEPARENT"):
            value = found.decode(errors="replace") if isinstance(found, bytes) else found
    return value is not None and value != _HANDED_IN


def _with_context(env: Mapping[Any, Any] | None) -> Mapping[Any, Any] | None:
    """``env`` (None: this process's environment) with the current span's TRACEPARENT."""
    base: Mapping[Any, Any] = os.environ if env is None else env
    if _program_chose(base):
        return env
    parent = _current()
    if parent is None:
        return env
    if isinstance(next(iter(base), ""), bytes):
        return {**base, b"TRACEPARENT": parent.encode()}
    return {**base, "TRACEPARENT": parent}


def install() -> None:
    """Hand the trace on to programs this process starts; idempotent."""
    global _active
    if _active:
        return
    _active = True
    execv, execve = registry.original(os, "execv"), registry.original(os, "execve")

    def patched_execv(path: Any, args: Any) -> None:
        env = _with_context(None)
        noted = _note_exec(True)
        try:
            if env is None:
                execv(path, args)
            else:
                execve(path, args, env)
        finally:  # only reached when the exec failed: this program runs on
            if noted:
                _note_exec(False)

    def patched_execve(path: Any, args: Any, env: Any) -> None:
        env = _with_context(env) or env
        noted = _note_exec(True)
        try:
            execve(path, args, env)
        finally:
            if noted:
                _note_exec(False)

    registry.patch(os, "execv", patched_execv)
    registry.patch(os, "execve", patched_execve)
    onimport.when_imported("subprocess", _patch_popen)


def _note_exec(replacing: bool) -> bool:
    """In a traced child about to replace its program: tell the collector, whose only sign
    of the process (its connection, closed on exec) is about to end while the process lives
    on. Its span then ends when ``join()`` reaps it, with the exit code of the new program.
    ``replacing=False``: the exec failed after all (the program runs on). True if told."""
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return False
    proc = mp.current_process()
    entered = proc.__dict__.get(names.ENTERED_ATTR)  # the pid whose span is open
    carrier = proc.__dict__.get(names.CARRIER_ATTR)
    if entered != os.getpid() or not isinstance(carrier, dict) or "span" not in carrier:
        return False  # not a traced child's own span (the main program, a raw fork copy)
    if not carrier.get("sampled", True):
        return False
    from .._child import wire

    # value: the pid whose program is replaced, 0 when the exec failed and it runs on
    return wire.send_report("exec", carrier["span"], entered if replacing else 0, None)


def _patch_popen(module: ModuleType) -> None:
    popen = module.Popen
    if not _active or registry.patched(popen, "__init__"):
        return
    original = registry.original(popen, "__init__")

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) <= 10:  # env not given by position (it is the 11th parameter)
            kwargs["env"] = _with_context(kwargs.get("env"))
        original(self, *args, **kwargs)

    registry.patch(popen, "__init__", __init__)


def uninstall() -> None:
    global _active
    _active = False
    subprocess = sys.modules.get("subprocess")
    owners: tuple[Any, ...] = (os,) if subprocess is None else (os, subprocess.Popen)
    registry.restore(owners)
