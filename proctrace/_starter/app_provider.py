"""The application's own SDK ``TracerProvider``, when the program installed one: the run
hands it every span, and shuts it down itself, once the run has ended.

The SDK shuts a provider down at exit (an ``atexit`` handler registered where the provider is
made). atexit runs the last registered first, and multiprocessing's exit hook, inside which
the run ends (the main span, the children's last spans), is registered when
``multiprocessing.util`` is imported: before the provider, in a program that made a
``Queue`` or imported ``concurrent.futures`` first. The provider was then shut down before
the run's last spans reached it, and the main span was lost without a word.
"""

from __future__ import annotations

import atexit
import sys
from typing import Any


def installed() -> Any:
    """The SDK TracerProvider the application installed itself, or None."""
    if "opentelemetry.sdk.trace" not in sys.modules:
        return None  # no SDK loaded: the application cannot have installed one
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if getattr(type(provider), "proctrace_owned", False):
        return None  # proctrace's own (_child/otel.py, _child/provider.py)
    return provider if isinstance(provider, TracerProvider) else None


def take_exit(provider: Any) -> bool:
    """Take the provider's shutdown at exit over (``shut_down`` does it once the run ended);
    False when it has none (made with ``shutdown_on_exit=False``)."""
    handler = getattr(provider, "_atexit_handler", None)
    if handler is None:
        return False
    atexit.unregister(handler)
    return True


def shut_down(provider: Any) -> None:
    """The provider's shutdown at exit, now that the run's spans reached it; unless the
    program shut it down itself meanwhile (the SDK forgets its handler then)."""
    if getattr(provider, "_atexit_handler", None) is None:
        return
    try:
        provider.shutdown()
    except Exception as exc:  # the program's exporter: its failure is not proctrace's
        sys.stderr.write(f"proctrace: the application's tracer provider failed to shut down: "
                         f"{exc!r}\n")
