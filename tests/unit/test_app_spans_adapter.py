"""Diverting an application's SDK provider in a traced child (``_otel.adapter.divert``): the
provider's tracers, made before, feed proctrace's processor only; an SDK without the private
member fails with a clear SDKCompatibilityError."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ConcurrentMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from proctrace._child import provider as _provider
from proctrace._otel import adapter


@pytest.mark.parametrize("concurrent", [False, True])
def test_divert_sends_every_span_of_existing_tracers_to_the_one_processor(concurrent):
    kwargs = {"active_span_processor": ConcurrentMultiSpanProcessor()} if concurrent else {}
    provider = TracerProvider(shutdown_on_exit=False, **kwargs)
    before = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(before))
    tracer = provider.get_tracer("made-before")
    after = InMemorySpanExporter()
    adapter.divert(provider, SimpleSpanProcessor(after))
    with tracer.start_as_current_span("diverted"):
        pass
    assert before.get_finished_spans() == ()
    assert [s.name for s in after.get_finished_spans()] == ["diverted"]
    assert len(adapter.processors(provider)) == 1


def test_divert_of_the_child_layer_is_idempotent_and_leaves_proctraces_own_alone():
    provider = TracerProvider(shutdown_on_exit=False)
    _provider.divert(provider)
    first = adapter.processors(provider)
    _provider.divert(provider)
    assert adapter.processors(provider) == first
    assert isinstance(first[0], _provider.ForwardProcessor)
    own = _provider.ForwardingTracerProvider(None, shutdown_on_exit=False)
    kept = adapter.processors(own)
    _provider.divert(own)
    assert adapter.processors(own) is kept


def test_an_sdk_without_the_member_fails_clearly():
    provider = TracerProvider(shutdown_on_exit=False)

    class Changed:  # a multi processor of an SDK that renamed its tuple
        def on_end(self, span: object) -> None:
            pass

    provider._active_span_processor = Changed()  # type: ignore[assignment]
    with pytest.raises(adapter.SDKCompatibilityError, match=r"Changed\._span_processors"):
        adapter.divert(provider, SimpleSpanProcessor(InMemorySpanExporter()))
    with pytest.raises(adapter.SDKCompatibilityError, match=r"1\.25\.0 to 1\.45\.2"):
        adapter.processors(provider)
