"""proctrace: OpenTelemetry spans and structlog logs for every process multiprocessing starts.

Importing proctrace is cheap: spawn children import it to unpickle their
target, so the SDK, exporters and structlog are loaded only where needed.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._api import configure, current_trace_id, settings
from ._config import ConfigurationError, Settings
from ._decorator import traced
from ._instrument import instrument, uninstrument

__all__ = [
    "ConfigurationError",
    "Settings",
    "__version__",
    "configure",
    "current_trace_id",
    "instrument",
    "settings",
    "traced",
    "uninstrument",
]
