"""``@traced`` on a generator function: the span covers the iteration, not the creation.

Calling a generator function runs none of its body; the work happens at each ``next()``
(or ``send()``, ``throw()``), in between the consumer's own. So the span opens at the
first resume and ends when the generator returns, raises (ERROR, as a call that raised)
or is closed early (a ``break`` in the consumer: not a failure). The span is current only
while the generator's body runs: a generator shares its consumer's context, and a span
left current across a ``yield`` would be the parent of whatever the consumer does next.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any

from .._core import config as _config
from .._core import ids as _ids
from .._core.ids import SpanRef
from .._core.spec import TraceSpec
from . import outcome as _outcome
from . import span as _span
from .run import open_call


def iterate_call(
    target: Callable[..., Generator[Any, Any, Any]],
    spec: TraceSpec,
    carrier: dict[str, Any] | None,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    parent: SpanRef | None = None,
    *,
    settings: _config.Settings | None = None,
) -> Generator[Any, Any, Any]:
    """``run_call()`` for a generator function (see the module's docstring)."""
    span = open_call(target, spec, carrier, args, kwargs, parent, settings=settings)
    if span is None:
        return (yield from target(*args, **kwargs))
    pid = _ids.pid()
    status, message = _span.STATUS_UNSET, ""
    try:
        with _span.activate(span):
            inner = target(*args, **kwargs)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                with _span.activate(span):
                    item = inner.send(sent) if thrown is None else inner.throw(thrown)
            except StopIteration as stop:
                return stop.value
            sent, thrown = None, None
            try:
                sent = yield item
            except GeneratorExit:
                with _span.activate(span):
                    inner.close()
                raise
            except BaseException as exc:  # consumer's throw(): into the generator's body
                thrown = exc
    except GeneratorExit:  # closed before its end: the consumer had what it wanted
        raise
    except BaseException as exc:
        status, message = _outcome.failed_status(span, exc)
        raise
    finally:
        _end(span, pid, status, message)


async def iterate_async(
    target: Callable[..., AsyncGenerator[Any, Any]],
    spec: TraceSpec,
    carrier: dict[str, Any] | None,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    parent: SpanRef | None = None,
    *,
    settings: _config.Settings | None = None,
) -> AsyncGenerator[Any, Any]:
    """``iterate_call()`` for an async generator function. Untraced (``open_call`` said
    no: an unsampled trace), what the consumer sends and throws still reaches the body."""
    span = open_call(target, spec, carrier, args, kwargs, parent, settings=settings)
    current = (lambda: _span.activate(span)) if span is not None else contextlib.nullcontext
    pid = _ids.pid()
    status, message = _span.STATUS_UNSET, ""
    try:
        with current():
            inner = target(*args, **kwargs)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                with current():
                    if thrown is None:
                        item = await inner.asend(sent)
                    else:
                        item = await inner.athrow(thrown)
            except StopAsyncIteration:
                return
            sent, thrown = None, None
            try:
                sent = yield item
            except GeneratorExit:
                with current():
                    await inner.aclose()
                raise
            except BaseException as exc:
                thrown = exc
    except GeneratorExit:
        raise
    except BaseException as exc:
        if span is not None:
            status, message = _outcome.failed_status(span, exc)
        raise
    finally:
        if span is not None:
            _end(span, pid, status, message)


def _end(span: _span.Span, pid: int, status: int, message: str) -> None:
    """End a generator's span, unless this is not the process that opened it (a copy made
    by ``os.fork()`` while it was suspended, closing it as the copy ends), or the
    interpreter is shutting down (a generator still suspended at exit, closed by the
    garbage collector after the run ended: there is no one left to send the span to)."""
    if _ids.pid() == pid and not sys.is_finalizing():
        span.end(status, message)
