"""The program's own OpenTelemetry API spans, in the main program and in every traced process.

Imported once the program has imported ``opentelemetry.trace`` (see
``span.when_api_loaded``); it loads the API only, never the SDK. ``provide()``
makes spans made through the API go where proctrace's own go:

- no provider set yet: ``LazyProvider`` becomes the global one. It costs nothing
  until the program asks for a tracer (a module-level ``trace.get_tracer()`` of a
  spawn child's main module included: the API's proxy tracer asks on its first
  span); then it loads the SDK and puts proctrace's forwarding provider in its
  place. A process that imports the API but makes no span never loads the SDK.
- an application's own SDK provider in a traced child (a fork child inherited it,
  or a spawn child's import of the main module built it again): its spans are
  diverted to this process's connection (``provider.divert``), so they are not
  lost in a batch at ``os._exit`` and not exported twice.
- an application's own SDK provider in the main program: left alone; the run's
  collector is a thread feeding it the children's spans.

``set_tracer_provider`` is wrapped so an application can still install its own
provider after proctrace's: in the main program it takes proctrace's place (as
it would have without proctrace), in a traced child it is diverted as above.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from .._core.config import Settings

# True in a traced child (set per process: a fork child inherits the main program's False).
_in_child = False


def _owned(provider: object) -> bool:
    return bool(getattr(type(provider), "proctrace_owned", False))


class LazyProvider(trace.TracerProvider):
    """proctrace's provider until the program asks for a tracer; then the SDK's forwarding
    provider, which takes its place as the global provider."""

    proctrace_owned = True

    def __init__(self, settings: Settings, start_run: Callable[[], object] | None) -> None:
        self._settings = settings
        self._start_run = start_run
        self._lock = threading.RLock()
        self._real: Any = None

    def real(self) -> Any:
        """The forwarding SDK provider, made (and made global) on first use."""
        with self._lock:
            if self._real is None:
                from . import provider

                self._real = provider.forwarding(self._settings, self._start_run)
                if trace.get_tracer_provider() is self:
                    from .._otel import adapter

                    adapter.replace_global_provider(self._real)
            return self._real

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return self.real().get_tracer(*args, **kwargs)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        # The SDK provider's other members (force_flush, add_span_processor, resource...).
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.real(), name)


def provide(
    settings: Settings, start_run: Callable[[], object] | None = None, *, child: bool
) -> None:
    """Route this process's API spans to the run (see the module's docstring); idempotent.

    ``start_run`` (main program) sets the run up should its first span end before any
    process started; ``child`` says this is a traced child."""
    global _in_child
    _in_child = child
    _wrap_set_tracer_provider()
    current = trace.get_tracer_provider()
    if isinstance(current, trace.ProxyTracerProvider):  # none set yet
        trace.set_tracer_provider(LazyProvider(settings, start_run))
    elif child:
        _divert(current)


def _divert(provider: object) -> None:
    sdk = sys.modules.get("opentelemetry.sdk.trace")
    if sdk is not None and isinstance(provider, sdk.TracerProvider) and not _owned(provider):
        from . import provider as _provider

        _provider.divert(provider)


def _wrap_set_tracer_provider() -> None:
    """Let the application replace proctrace's provider with its own (see the docstring).

    The API refuses a second provider, so this wrapper hands the place over instead."""
    original = trace.set_tracer_provider
    if getattr(original, "__proctrace__", False):
        return

    def set_tracer_provider(tracer_provider: trace.TracerProvider) -> None:
        current = trace.get_tracer_provider()
        if _owned(current) and tracer_provider is not current:
            from .._otel import adapter

            adapter.replace_global_provider(tracer_provider)
        else:
            original(tracer_provider)
        if _in_child and trace.get_tracer_provider() is tracer_provider:
            _divert(tracer_provider)

    set_tracer_provider.__proctrace__ = True  # type: ignore[attr-defined]
    trace.set_tracer_provider = set_tracer_provider
