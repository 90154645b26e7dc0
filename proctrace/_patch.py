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

    _original_start = original
    process.BaseProcess.start = start  # type: ignore[method-assign]


def uninstall() -> None:
    """Restore the original ``start``."""
    global _original_start
    if _original_start is not None:
        process.BaseProcess.start = _original_start  # type: ignore[method-assign]
        _original_start = None
