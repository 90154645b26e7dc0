"""The one patch: ``BaseProcess.start`` captures a carrier where the process is started.

``start()`` runs in the thread whose span is the parent, so the context is
captured there (as OpenTelemetry's threading instrumentation does for
``Thread.start``) and stored on the process object. multiprocessing pickles
the whole object for spawn and forkserver, and a fork child has it in memory,
so the carrier reaches every child with no code but the decorator.
"""

from __future__ import annotations

import functools
from multiprocessing import process
from typing import Any

CARRIER_ATTR = "_proctrace_carrier"
_original_start: Any = None
_decorated = False


def decorated() -> bool:
    """True once a ``@traced`` function exists in this process."""
    return _decorated


def install(*, by_decorator: bool = False) -> None:
    """Patch ``BaseProcess.start`` and the pools once; idempotent."""
    global _original_start, _decorated
    _decorated = _decorated or by_decorator
    if _original_start is not None:
        return
    from . import _pool

    _pool.install()
    original = process.BaseProcess.start

    @functools.wraps(original)
    def start(self: process.BaseProcess) -> None:
        from . import _carrier

        carrier = _carrier.capture(self)
        if carrier is not None:
            setattr(self, CARRIER_ATTR, carrier)
        original(self)
        if carrier is not None:
            _carrier.announce(self, carrier)

    def signaller(name: str, signum: int) -> Any:
        send_signal = getattr(process.BaseProcess, name)

        @functools.wraps(send_signal)
        def method(self: process.BaseProcess) -> None:
            # The child dies of the signal's default action, as without proctrace;
            # the collector learns here why its connection is about to end.
            from . import _carrier

            _carrier.report(self, "signal", signum)
            send_signal(self)

        return method

    original_join = process.BaseProcess.join

    @functools.wraps(original_join)
    def join(self: process.BaseProcess, timeout: float | None = None) -> None:
        original_join(self, timeout)
        code = self.exitcode
        if code is not None:
            from . import _carrier

            _carrier.report(self, "exited", code)

    _originals.update(
        start=original,
        terminate=process.BaseProcess.terminate,
        kill=process.BaseProcess.kill,
        join=original_join,
    )
    _original_start = original
    process.BaseProcess.start = start  # type: ignore[method-assign]
    process.BaseProcess.terminate = signaller("terminate", 15)  # type: ignore[method-assign]
    process.BaseProcess.kill = signaller("kill", 9)  # type: ignore[method-assign]
    process.BaseProcess.join = join  # type: ignore[method-assign]


_originals: dict[str, Any] = {}


def uninstall() -> None:
    """Restore the originals."""
    global _original_start
    for name, original in _originals.items():
        setattr(process.BaseProcess, name, original)
    _originals.clear()
    _original_start = None
