"""proctrace: OpenTelemetry spans and structlog logs for every process multiprocessing starts.

Importing proctrace is cheap: spawn children import it to unpickle their
target, so the SDK, exporters and structlog are loaded only where needed.
"""

from __future__ import annotations

from ._api.decorator import traced
from ._api.functions import (
    configure,
    current_trace_id,
    instrument,
    settings,
    uninstrument,
)
from ._api.propagate import extract, inject
from ._core import VERSION as __version__
from ._core.config import ConfigurationError, Settings

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
