"""The stdlib logging record factory in one process: keys on records, ``extra`` still free to
name them, and everything put back by ``uninstall()``."""

from __future__ import annotations

import logging

from proctrace._child import span as _span
from proctrace._child import stdlog


def _record(**extra: object) -> logging.LogRecord:
    logger = logging.getLogger("proctrace.tests.stdlog")
    return logger.makeRecord(logger.name, logging.INFO, "f.py", 1, "m %s", (1,), None, extra=extra)


def test_records_carry_the_keys_and_uninstall_puts_everything_back(monkeypatch):
    from proctrace._core import ids

    monkeypatch.setattr(ids, "main", None)  # no run's main span here (another test's)
    factory, make_record = logging.getLogRecordFactory(), logging.Logger.makeRecord
    stdlog.install("svc")
    try:
        outside = _record()
        assert [getattr(outside, key) for key in stdlog.KEYS] == [
            "0", "0", "svc", False, "MainProcess", None
        ]
        span = _span.Span("s", "1" * 32, None, {}, announce=False)
        with _span.activate(span):
            inside = _record(order=7, process_name="mine")
        assert (inside.otelTraceID, inside.otelSpanID) == ("1" * 32, span.span_id)
        assert inside.process_name == "mine" and inside.order == 7  # extra wins, no KeyError
        assert [(name, attrs) for name, _, attrs in span.events] == [
            ("m 1", {"order": 7, "logger": "proctrace.tests.stdlog", "level": "info"})
        ]
    finally:
        stdlog.uninstall()
    assert logging.getLogRecordFactory() is factory
    assert logging.Logger.makeRecord is make_record
    assert not hasattr(_record(), "otelTraceID")


def test_uninstall_keeps_a_factory_installed_after_proctraces():
    original = logging.getLogRecordFactory()
    stdlog.install("svc")
    mine = logging.getLogRecordFactory()

    def later(*args: object, **kwargs: object) -> logging.LogRecord:
        return mine(*args, **kwargs)

    logging.setLogRecordFactory(later)
    try:
        stdlog.uninstall()
        assert logging.getLogRecordFactory() is later
    finally:
        logging.setLogRecordFactory(original)
