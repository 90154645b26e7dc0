"""The SDK provider proctrace installs, so the program's own API spans travel like its own.

``ForwardProcessor`` sends every span made through the OpenTelemetry API (in the
main process or in a fork child) as a record over this process's connection, so
no exporter or gRPC channel ever exists in a process that forks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from .._child import wire as _wire
from .._otel import adapter
from .._otel.convert import record_of


class ForwardProcessor(SpanProcessor):
    """Sends every ended span to the collector; never blocks on the network."""

    def __init__(self, start_run: Callable[[], object]) -> None:
        self._start_run = start_run

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        if _wire.address() is None:
            self._start_run()  # the application's first span starts the run
        _wire.send(record_of(span))

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class ForwardingTracerProvider(adapter.FixedResourceTracerProvider):
    """The SDK provider proctrace installs: every span goes to the collector.

    ``start_run`` sets the run up when the program's first span ends before any
    process started.
    """

    def __init__(self, start_run: Callable[[], object], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_span_processor(ForwardProcessor(start_run))


def yield_to_application_provider() -> None:
    """Let the application replace proctrace's provider with its own SDK provider.

    proctrace installs its provider when the first function is decorated, so
    that spans made before any process starts are kept. An application that
    then calls ``trace.set_tracer_provider()`` expects its provider to win, as
    it would without proctrace; the API would refuse a second provider, so
    this wrapper hands the place over instead.
    """
    from opentelemetry import trace

    original = trace.set_tracer_provider
    if getattr(original, "__proctrace__", False):
        return

    def set_tracer_provider(tracer_provider: trace.TracerProvider) -> None:
        current = adapter.global_provider()
        if isinstance(current, ForwardingTracerProvider) and tracer_provider is not current:
            adapter.replace_global_provider(tracer_provider)
            return
        original(tracer_provider)

    set_tracer_provider.__proctrace__ = True  # type: ignore[attr-defined]
    trace.set_tracer_provider = set_tracer_provider
