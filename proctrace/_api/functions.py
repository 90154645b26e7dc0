"""The functions of the public surface other than the decorator.

The starter side is imported inside each function: spawn children import this
module with the package, and must not pay for what only a starter needs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from .._child import span as _span
from .._core import config as _config
from .._hooks import install as _hooks
from .._hooks import registry


def configure(
    *,
    service_name: str | None = None,
    exporter: str | Iterable[str] | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    disabled: bool | None = None,
    trace_dir: str | os.PathLike[str] | None = None,
    max_repr: int | None = None,
    log_format: str | None = None,
    redact: Iterable[str] = (),
    log_events: bool | None = None,
    sampler: object = None,
    sampler_arg: float | None = None,
    quiet: bool | None = None,
) -> None:
    """Set what the ``OTEL_*`` variables would set; arguments win over the environment.

    ``exporter`` is ``"otlp"``, ``"console"`` or ``"none"`` (or several);
    ``protocol`` is ``"grpc"`` (the default) or ``"http/protobuf"``; with no
    endpoint and no exporter, spans go to a trace file under ``trace_dir``
    (default ``.proctrace``). ``max_repr`` bounds each argument's repr,
    ``log_format`` is ``"auto"``, ``"json"`` or ``"console"``, ``redact`` adds
    argument names to hide everywhere, ``log_events=False`` stops attaching a
    child's structlog events to its span. ``sampler`` is a sampler's name
    (``"always_on"``, ``"always_off"``, ``"traceidratio"``, ``"parentbased_always_on"``
    (the default), ``"parentbased_always_off"``, ``"parentbased_traceidratio"``) with
    ``sampler_arg`` its ratio, or one of the SDK's ``ALWAYS_ON``, ``ALWAYS_OFF``,
    ``TraceIdRatioBased(r)``, ``ParentBased(...)``; it decides once per trace, and
    child processes and tasks follow. ``quiet=True`` keeps proctrace's own lines
    (``process started``/``finished``/``failed``, ``spans written to``) off stderr; warnings
    stay. Raises ConfigurationError for a bad argument (a bad variable in the environment
    is one warning on stderr, and its fallback applies); call it before the first traced
    process starts.
    """
    from .._starter import run as _starter

    _starter.configure(
        _config.resolve(
            service_name=service_name,
            exporter=exporter,
            endpoint=endpoint,
            protocol=protocol,
            disabled=disabled,
            trace_dir=trace_dir,
            max_repr=max_repr,
            log_format=log_format,
            redact=redact,
            log_events=log_events,
            sampler=sampler,
            sampler_arg=sampler_arg,
            quiet=quiet,
        )
    )


def current_trace_id() -> str | None:
    """The 32-hex id of the current trace: the current span's, else this run's; None before."""
    ids = _span.current_ids()
    if ids is not None:
        return ids[0]
    from .._starter import run as _starter

    return _starter.run_trace_id()


def settings() -> _config.Settings:
    """The settings in force: those given to ``configure()``, else read from the environment."""
    from .._starter import run as _starter

    return _starter.settings()


def instrument() -> None:
    """Trace every process target and pool task; idempotent.

    Undecorated targets get the same span, attributes and logs as ``@traced``
    ones, named after the target's qualified name.
    """
    from .._starter import run as _starter

    registry.enable_instrument()
    _starter.prepare_main()


def uninstrument() -> None:
    """Stop tracing undecorated targets and restore multiprocessing's originals.

    While ``@traced`` functions exist in this process, the ``start()`` and pool
    hooks they need stay in place; they only act for decorated functions.
    """
    registry.set_instrumenting(False)
    if not registry.decorated():
        _hooks.uninstall()
