"""The SDK side of the program's own spans: every span made through the OpenTelemetry API in a
traced process travels like proctrace's own, as a record over this process's connection.

Imported only once the program asks for a tracer (``otel.LazyProvider``), or where an SDK
provider already exists: a process that never makes such a span never loads the SDK.
``ForwardProcessor`` sends each span as it ends, so no exporter or gRPC channel ever
exists in a process that forks, and ``os._exit``, ``terminate()`` or a killed sibling
cannot lose a span that has ended.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from .._core.config import Settings
from .._core.ids import parse_traceparent
from .._otel import adapter
from .._otel.convert import record_of
from .._otel.samplers import sampler_of
from . import wire as _wire


class ForwardProcessor(SpanProcessor):
    """Sends every ended span to the collector; never blocks on the network."""

    def __init__(self, start_run: Callable[[], object] | None = None) -> None:
        self._start_run = start_run

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        if _wire.address() is None and self._start_run is not None:
            self._start_run()  # the application's first span starts the run
        _wire.send(record_of(span))

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class ForwardingTracerProvider(adapter.FixedResourceTracerProvider):
    """The SDK provider proctrace installs: every span goes to the collector.

    ``start_run`` sets the run up when the program's first span ends before any
    process started (the main program); a child's connection is already set.
    """

    proctrace_owned = True

    def __init__(self, start_run: Callable[[], object] | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_span_processor(ForwardProcessor(start_run))

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        """The SDK's tracer; under a ``TRACEPARENT`` handed in, a span started with no span
        current joins that trace, as the run's main span does (it began a trace of its own)."""
        tracer = super().get_tracer(*args, **kwargs)
        handed = parse_traceparent(os.environ.get("TRACEPARENT", ""))
        if handed is None:
            return tracer
        parent = trace.NonRecordingSpan(
            trace.SpanContext(
                int(handed.trace_id, 16), int(handed.span_id, 16), is_remote=True,
                trace_flags=trace.TraceFlags(1 if handed.sampled else 0),
            )
        )
        start_span = tracer.start_span

        def start_under_handed_in(name: str, context: Context | None = None, *rest: Any,
                                  **options: Any) -> Any:  # fmt: skip
            if not trace.get_current_span(context).get_span_context().is_valid:
                context = trace.set_span_in_context(parent, context)
            return start_span(name, context, *rest, **options)

        tracer.start_span = start_under_handed_in  # type: ignore[method-assign]  # and start_as_current_span()
        return tracer


def forwarding(settings: Settings, start_run: Callable[[], object] | None) -> TracerProvider:
    """proctrace's provider for the run's ``settings``: its sampler, its service name."""
    return ForwardingTracerProvider(
        start_run,
        resource=Resource({"service.name": settings.service_name}),
        shutdown_on_exit=False,
        sampler=sampler_of(settings),
    )


def divert(provider: object) -> None:
    """In a traced child: the spans of the application's own SDK ``provider`` (inherited by a
    fork child, or built again by a spawn child's import of the main module) go over this
    process's connection instead of into its processors. Their batch would die with the
    process at ``os._exit``; the run's collector hands them to the main program's provider
    (or the run's destination). No span goes both ways."""
    if not isinstance(provider, TracerProvider) or isinstance(provider, ForwardingTracerProvider):
        return
    current = adapter.processors(provider)
    if len(current) == 1 and isinstance(current[0], ForwardProcessor):
        return  # diverted already (a fork child of a child)
    adapter.divert(provider, ForwardProcessor())
