"""What crosses the process boundary: a plain dict captured in the thread that calls ``start()``.

The carrier holds the W3C ``traceparent`` of the parent span, the collector's
socket path, the validated settings, the starter's pid and the start method.
It is plain data: pickled as part of the process object for spawn and
forkserver, inherited in memory under fork.
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing import context as mp_context
from typing import Any

from . import _decorator, _patch, _span


def inherited() -> dict[str, Any] | None:
    """The carrier this process was started with, if it is a traced (or followed) child."""
    carrier = getattr(multiprocessing.current_process(), _patch.CARRIER_ATTR, None)
    return carrier if isinstance(carrier, dict) else None


def start_method_of(proc: Any) -> str:
    method = getattr(proc, "_start_method", None)
    if method:
        return str(method)
    # multiprocessing.Process uses the default context; asking fixes it, as start() would.
    return str(mp_context._default_context.get_start_method())


def capture(proc: Any) -> dict[str, Any] | None:
    """The carrier for ``proc``, or None when it is not to be traced."""
    from . import _runtime

    here = inherited()
    traced_target = _decorator.spec_of(getattr(proc, "_target", None)) is not None
    if here is None and not traced_target and not _runtime.active():
        return None
    if here is not None:
        settings = here["settings"]
        socket_path = here["socket"]
        parent = _span.current_ids() or _span.parse_traceparent(here["traceparent"])
    else:
        runtime = _runtime.ensure()
        if runtime is None:
            return None
        settings = runtime.settings_dict
        socket_path = runtime.socket_path
        parent = _span.current_ids() or runtime.root_ids()
    if settings.get("disabled") or parent is None:
        return None
    return {
        "traceparent": _span.traceparent(*parent),
        "socket": socket_path,
        "settings": settings,
        "starter_pid": os.getpid(),
        "start_method": start_method_of(proc),
    }
