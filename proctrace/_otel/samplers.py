"""The SDK sampler for the run's settings, and a root decision by an application's sampler."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import sampling

from .._core.config import Settings
from .._core.ids import SpanRef


def sampler_of(settings: Settings) -> sampling.Sampler:
    """The SDK sampler named by ``settings`` (what ``OTEL_TRACES_SAMPLER`` would build)."""
    name, ratio = settings.sampler, settings.sampler_ratio
    root: sampling.Sampler
    if name.endswith("always_off"):
        root = sampling.ALWAYS_OFF
    elif name.endswith("traceidratio"):
        root = sampling.TraceIdRatioBased(ratio)
    else:
        root = sampling.ALWAYS_ON
    return sampling.ParentBased(root) if name.startswith("parentbased_") else root


def decide_root(sampler: Any, trace_id: str, name: str, parent: SpanRef | None) -> bool:
    """Ask an SDK sampler (the application's provider's) about a trace's first span here."""
    context = None
    if parent is not None:
        flags = trace.TraceFlags(
            trace.TraceFlags.SAMPLED if parent.sampled else trace.TraceFlags.DEFAULT
        )
        remote = trace.SpanContext(
            int(parent.trace_id, 16), int(parent.span_id, 16), is_remote=True, trace_flags=flags
        )
        context = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    result = sampler.should_sample(context, int(trace_id, 16), name)
    return bool(result.decision.is_sampled())
