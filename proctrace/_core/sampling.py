"""Sampling: the OpenTelemetry samplers by name, decided once per trace and inherited.

A run applies its sampler where a trace starts in it (the main process's span,
or a span handed in with ``TRACEPARENT``); every span below inherits the
decision through the W3C ``sampled`` flag, across processes. For the
specification's samplers that is exactly what each would decide span by span:
``always_on``/``always_off`` are constant, ``traceidratio`` is a function of
the trace id, and the ``parentbased_*`` ones follow the parent. So a child or
task of an unsampled span records nothing, and no exported span has a parent
that was dropped.
"""

from __future__ import annotations

SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
DEFAULT = "parentbased_always_on"
_TRACE_ID_LIMIT = (1 << 64) - 1


def ratio_bound(ratio: float) -> int:
    """The SDK's ``TraceIdRatioBased`` bound: sampled when the low 64 bits are below it."""
    return round(ratio * (_TRACE_ID_LIMIT + 1))


def decide(sampler: str, ratio: float, trace_id: str, parent_sampled: bool | None) -> bool:
    """Whether a span of ``trace_id`` is sampled, with a (remote) parent's flag or None."""
    if sampler.startswith("parentbased_"):
        if parent_sampled is not None:
            return parent_sampled
        sampler = sampler.removeprefix("parentbased_")
    if sampler == "always_off":
        return False
    if sampler == "traceidratio":
        return int(trace_id, 16) & _TRACE_ID_LIMIT < ratio_bound(ratio)
    return True


def can_sample(sampler: str, ratio: float) -> bool:
    """False for a sampler that samples no trace whatever the parent says (``always_off``, a
    ``traceidratio`` of 0): a run with it records nothing, and needs no collector."""
    if sampler == "always_off":
        return False
    return not (sampler == "traceidratio" and ratio_bound(ratio) <= 0)


def from_description(description: str) -> tuple[str, float] | None:
    """``(name, ratio)`` of a standard SDK sampler from its ``get_description()``, or None.

    ``ParentBased`` counts only with its default sub-samplers (follow the parent).
    """
    simple = {"AlwaysOnSampler": ("always_on", 1.0), "AlwaysOffSampler": ("always_off", 1.0)}
    if description in simple:
        return simple[description]
    if description.startswith("TraceIdRatioBased{") and description.endswith("}"):
        try:
            return "traceidratio", float(description[len("TraceIdRatioBased{") : -1])
        except ValueError:
            return None
    prefix = "ParentBased{root:"
    defaults = (
        ",remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,"
        "localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}"
    )
    if description.startswith(prefix) and description.endswith(defaults):
        root = from_description(description[len(prefix) : -len(defaults)])
        if root is not None and not root[0].startswith("parentbased_"):
            return "parentbased_" + root[0], root[1]
    return None
