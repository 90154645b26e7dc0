"""proctrace: OpenTelemetry spans and structlog logs for every process multiprocessing starts.

Importing proctrace is cheap: spawn children import it to unpickle their
target, so the SDK, exporters and structlog are loaded only where needed.
The public names load with their first use (``from proctrace import traced``
is that use), so a process that only needs a part of the package, the agent
or the command line, never loads the rest: the agent's start is CPU taken
from the traced program's cores.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from ._core import VERSION as __version__

if _typing.TYPE_CHECKING:
    from ._api.decorator import traced
    from ._api.functions import (
        configure,
        current_trace_id,
        instrument,
        settings,
        uninstrument,
    )
    from ._api.propagate import extract, inject
    from ._core.config import ConfigurationError, Settings

# Each public name, and the module it comes from.
_PUBLIC = {
    "traced": "._api.decorator",
    "configure": "._api.functions",
    "current_trace_id": "._api.functions",
    "instrument": "._api.functions",
    "settings": "._api.functions",
    "uninstrument": "._api.functions",
    "extract": "._api.propagate",
    "inject": "._api.propagate",
    "ConfigurationError": "._core.config",
    "Settings": "._core.config",
}

__all__ = [
    "ConfigurationError",
    "Settings",
    "__version__",
    "configure",
    "current_trace_id",
    "extract",
    "inject",
    "instrument",
    "settings",
    "traced",
    "uninstrument",
]


def __getattr__(name: str) -> _typing.Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'proctrace' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value  # once: later lookups find it here
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
