"""Every private member of the OpenTelemetry SDK and API that proctrace uses, in one place.

Each is named with the versions it was checked against. Where a member is
missing (a version that changed it), the function raises ``SDKCompatibilityError``
naming it, instead of proctrace diverting or dropping spans silently. Public
paths are used everywhere else.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

CHECKED = "opentelemetry-sdk and -api 1.25.0 to 1.45.2"


class SDKCompatibilityError(RuntimeError):
    """The installed OpenTelemetry SDK lacks a member proctrace relies on."""


def _missing(member: str) -> SDKCompatibilityError:
    return SDKCompatibilityError(
        f"{member} is missing from the installed OpenTelemetry SDK (proctrace was checked "
        f"against {CHECKED}); install a version in that range"
    )


def span_processor(provider: TracerProvider) -> SpanProcessor:
    """The processor an SDK ``TracerProvider`` hands ended spans to (all its processors).

    ``TracerProvider._active_span_processor`` (a ``SynchronousMultiSpanProcessor``
    or ``ConcurrentMultiSpanProcessor``): present in every version checked; there
    is no public accessor. proctrace feeds it the spans of child processes.
    """
    processor = getattr(provider, "_active_span_processor", None)
    if processor is None or not callable(getattr(processor, "on_end", None)):
        raise _missing("TracerProvider._active_span_processor")
    return processor  # type: ignore[no-any-return]


def divert(provider: TracerProvider, processor: SpanProcessor) -> None:
    """Hand every span ``provider`` ends from now on to ``processor`` alone.

    ``SynchronousMultiSpanProcessor._span_processors`` and
    ``ConcurrentMultiSpanProcessor._span_processors`` (a tuple the multi processor
    iterates for each span; replaced under its ``_lock``): in every version checked.
    The multi processor is changed in place, because every tracer the provider
    already handed out (a module-level tracer, inherited by a fork child) holds it.
    The processors it held are left as they are: not shut down, never fed again.
    """
    multi = span_processor(provider)
    if not isinstance(getattr(multi, "_span_processors", None), tuple):
        raise _missing(f"{type(multi).__name__}._span_processors")
    lock = getattr(multi, "_lock", None)
    if lock is None:
        raise _missing(f"{type(multi).__name__}._lock")
    with lock:
        multi._span_processors = (processor,)  # type: ignore[attr-defined]


def processors(provider: TracerProvider) -> tuple[SpanProcessor, ...]:
    """The processors ``provider`` hands its spans to (see ``divert``)."""
    found = getattr(span_processor(provider), "_span_processors", None)
    if not isinstance(found, tuple):
        raise _missing("SynchronousMultiSpanProcessor._span_processors")
    return found


def replace_global_provider(provider: trace.TracerProvider) -> None:
    """Make ``provider`` the global tracer provider although one is set already.

    ``opentelemetry.trace._TRACER_PROVIDER``: the API's global, in every version
    checked. ``set_tracer_provider`` refuses a second provider; proctrace uses this
    only to hand its own place over to the application's provider.
    """
    if not hasattr(trace, "_TRACER_PROVIDER"):
        raise _missing("opentelemetry.trace._TRACER_PROVIDER")
    trace._TRACER_PROVIDER = provider


def global_provider() -> Any:
    """The provider set globally, without the API's proxy (None when none is set)."""
    if not hasattr(trace, "_TRACER_PROVIDER"):
        raise _missing("opentelemetry.trace._TRACER_PROVIDER")
    return trace._TRACER_PROVIDER


class FixedResourceTracerProvider(TracerProvider):
    """A ``TracerProvider`` that does not re-detect its resource in fork children.

    ``TracerProvider._handle_fork`` (registered with ``os.register_at_fork`` in
    recent versions; absent, and so never called, in older ones) re-detects the
    process resource in every fork child, which starts a thread pool there and
    costs each child milliseconds. The resource of this provider is fixed (the
    agent sets the exported one), so a fork child needs only a fresh lock.
    """

    def _handle_fork(self) -> None:
        self._tracers_lock = threading.Lock()
