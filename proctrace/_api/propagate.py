"""``inject()`` and ``extract()``: proctrace's trace handed to what it does not start itself.

A message queue, Celery task headers, Ray or Dask task arguments: put ``inject()``'s dict
where the work goes, and ``with extract(headers):`` where it runs, and the spans made there
(processes started, traced calls, OpenTelemetry API spans) join the same trace. The carrier
is the W3C trace context: ``traceparent`` (and ``tracestate`` when one was handed in).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

from .._child import span as _span
from .._core.ids import SpanRef, parse_traceparent, traceparent


def _current() -> SpanRef | None:
    ref = _span.current_ids()
    if ref is not None:
        return ref
    from .._starter import carrier as _carrier  # the starter: not loaded by plain children

    return _carrier.fallback_parent()


def inject() -> dict[str, str]:
    """The W3C headers of the current span (the run's main span when none is current, which
    starts the run in the main program); ``{}`` when tracing is disabled."""
    ref = _current()
    if ref is None:
        return {}
    headers = {"traceparent": traceparent(*ref)}
    handed = parse_traceparent(os.environ.get("TRACEPARENT", ""))
    state = os.environ.get("TRACESTATE", "")
    if state and handed is not None and handed.trace_id == ref.trace_id:
        headers["tracestate"] = state  # vendors' state travels with the trace it came with
    return headers


@contextlib.contextmanager
def extract(carrier: Mapping[str, str]) -> Iterator[SpanRef | None]:
    """Make the span ``carrier`` names current inside the ``with`` block (header names are
    case-insensitive); yields it, or None (and changes nothing) when it names no valid span."""
    value = next((v for k, v in carrier.items() if str(k).lower() == "traceparent"), None)
    ref = parse_traceparent(value) if isinstance(value, str) else None
    if ref is None:
        yield None
        return
    with _span.activate(_span.Parent(*ref)):
        yield ref
