"""The process hook: ``BaseProcess.start`` captures a carrier where the process is started.

``start()`` runs in the thread whose span is the parent, so the context is
captured there (as OpenTelemetry's threading instrumentation does for
``Thread.start``) and stored on the process object. multiprocessing pickles
the whole object for spawn and forkserver, and a fork child has it in memory,
so the carrier reaches every child with no code but the decorator.
``terminate()``, ``kill()`` and ``join()`` tell the collector how a child ended.
"""

from __future__ import annotations

import functools
from multiprocessing import process
from typing import Any

from .._core import names
from . import pools, registry, targets

# The starter side (``proctrace._starter``) is imported where a process is started, not
# here: a child that starts no process of its own never loads it.

_Base = process.BaseProcess


_carrier: Any = None


def _starter() -> Any:
    """``proctrace._starter.carrier``, imported on first use (an import statement run on
    every call costs each call a walk through the import system)."""
    global _carrier
    if _carrier is None:
        from .._starter import carrier

        _carrier = carrier
    return _carrier


_GENERATORS = 0x20 | 0x200  # CO_GENERATOR | CO_ASYNC_GENERATOR


def _iterated(target: Any) -> bool:
    """A ``@traced`` generator (or async generator) function: its span is its iteration's."""
    code = getattr(target, "__code__", None)
    return (
        code is not None
        and bool(code.co_flags & _GENERATORS)
        and getattr(target, "__proctrace__", None) is not None
    )


def installed() -> bool:
    return registry.patched(_Base, "start")


def install() -> None:
    """Patch ``BaseProcess`` once; idempotent."""
    if installed():
        return
    original_start = registry.original(_Base, "start")

    @functools.wraps(original_start)
    def start(self: process.BaseProcess) -> None:
        starter = _starter()
        carrier, wrap = starter.capture(
            self,
            instrumenting=registry.instrumenting(),
            pool_parent=pools.spawning_parent(self),
            decorated=registry.decorated(),
        )
        if carrier is None:
            original_start(self)
            return
        run = None
        if wrap is not None and self._target is None:  # type: ignore[attr-defined]
            # A subclass's own run(): the child finds the stand-in on the object itself.
            run = self.__dict__["run"] = targets.RunMethod(wrap)
        elif wrap is not None:
            self._target = targets.ProcessTarget(self._target, wrap)  # type: ignore[attr-defined]
        elif _iterated(self._target):  # type: ignore[attr-defined]
            # A @traced generator function as the target: its wrapper opens no span until
            # iterated, and multiprocessing never iterates it. The process's span, as for
            # any target (around the call, which makes the generator and runs none of it).
            target = self._target  # type: ignore[attr-defined]
            self._target = targets.ProcessTarget(target, target.__proctrace__)  # type: ignore[attr-defined]
        self.__dict__[names.CARRIER_ATTR] = carrier
        try:
            original_start(self)  # pickles the object (spawn, forkserver) or forks
        except BaseException as exc:
            starter.announce(self, carrier, failed=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if run is not None and self.__dict__.get("run") is run:
                del self.__dict__["run"]  # here, run() is the class's own again
        # A fork child's start was prepared: its pid goes on its connection, nothing else.
        prepared = carrier.get("fork")
        if prepared is not None:
            prepared.forked(self._popen.pid)  # type: ignore[attr-defined]
        else:
            starter.announce(self, carrier)

    def signaller(name: str, signum: int) -> Any:
        send_signal = registry.original(_Base, name)

        @functools.wraps(send_signal)
        def method(self: process.BaseProcess) -> None:
            # The child dies of the signal's default action, as without proctrace;
            # the collector learns here why its connection is about to end.
            _starter().report(self, "signal", signum)
            send_signal(self)

        return method

    original_join = registry.original(_Base, "join")

    @functools.wraps(original_join)
    def join(self: process.BaseProcess, timeout: float | None = None) -> None:
        original_join(self, timeout)
        carrier = self.__dict__.get(names.CARRIER_ATTR)
        if carrier is not None:
            code = self.exitcode
            if code is not None:
                _starter().reaped(self, carrier, code)

    original_is_alive = registry.original(_Base, "is_alive")

    @functools.wraps(original_is_alive)
    def is_alive(self: process.BaseProcess) -> bool:
        alive: bool = original_is_alive(self)
        if not alive:  # it may have reaped the child just now (a pool's exit does so)
            carrier = self.__dict__.get(names.CARRIER_ATTR)
            if carrier is not None and _starter().REAPED not in carrier:
                code = self.exitcode
                if code is not None:
                    _starter().reaped(self, carrier, code)
        return alive

    registry.patch(_Base, "is_alive", is_alive)
    registry.patch(_Base, "terminate", signaller("terminate", 15))
    registry.patch(_Base, "kill", signaller("kill", 9))
    registry.patch(_Base, "join", join)
    registry.patch(_Base, "start", start)


def uninstall() -> None:
    registry.restore((_Base,))
