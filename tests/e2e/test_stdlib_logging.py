"""stdlib logging in traced processes and tasks: the opentelemetry-instrumentation-logging keys
and proctrace's process keys on every record, records as span events of the current span; a
program that is not traced keeps its records and handlers as they were."""

from __future__ import annotations

import json

from conftest import by_name, settle

FORMAT = (
    "%(otelTraceID)s %(otelSpanID)s %(otelServiceName)s %(otelTraceSampled)s "
    "%(process_name)s %(start_method)s %(message)s"
)


def _lines(stdout: str, suffix: str) -> list[list[str]]:
    return [line.split() for line in stdout.splitlines() if line.endswith(suffix)]


def test_records_carry_the_trace_and_process_keys(run_script, receiver, method):
    """A logging format naming the OpenTelemetry keys works in the main program and in every
    child; a child's records name its span, outside any span the ids are "0"."""
    source = f"""
    import logging, multiprocessing, sys
    from proctrace import traced

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format={FORMAT!r})

    @traced
    def task():
        logging.getLogger("app").info("in-child")

    if __name__ == "__main__":
        logging.info("in-main")
        p = multiprocessing.get_context(sys.argv[1]).Process(target=task, name="worker-7")
        p.start(); p.join()
        logging.warning("main-after")
    """
    run = run_script(source, method, env={**receiver.env(), "OTEL_SERVICE_NAME": "logsvc"})
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 2))
    task, (main,) = spans["task"][0], spans["prog"]
    assert _lines(run.stdout, "in-main") == [  # before the run's main span opened
        ["0", "0", "logsvc", "False", "MainProcess", "None", "in-main"]
    ]
    # Once it is open, the main program's records name it (as inject() does), and become
    # its events: it is the main process's span.
    assert _lines(run.stdout, "main-after") == [
        [main.trace_id, main.span_id, "logsvc", "True", "MainProcess", "None", "main-after"]
    ]
    assert [e.name for e in main.events] == ["main-after"]
    assert _lines(run.stdout, "in-child") == [
        [task.trace_id, task.span_id, "logsvc", "True", "worker-7", method, "in-child"]
    ]


def test_records_become_events_of_the_current_span(run_script, receiver, method):
    """Each record a logger accepts is an event of the child's span: the formatted message,
    its level, its logger, its extra attributes (secret-looking ones redacted), and the
    traceback of an exception; records below the logger's level are not."""
    source = """
    import logging, multiprocessing, sys
    from proctrace import traced

    log = logging.getLogger("shop.orders")
    log.setLevel(logging.INFO)

    @traced
    def task():
        log.info("order %s taken", 7, extra={"customer": "ann", "api_token": "s3cret",
                                             "items": ["a", "b"]})
        log.debug("not enabled")
        log.warning("stock low", extra={"process_name": "mine"})
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("failed")

    if __name__ == "__main__":
        p = multiprocessing.get_context(sys.argv[1]).Process(target=task)
        p.start(); p.join()
    """
    run = run_script(source, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    task = by_name(settle(receiver, 2))["task"][0]
    events = {e.name: e.attributes for e in task.events}
    assert list(events) == [
        "process started", "order 7 taken", "stock low", "failed", "process finished"
    ]
    assert events["order 7 taken"] == {
        "level": "info",
        "logger": "shop.orders",
        "customer": "ann",
        "api_token": "[REDACTED]",
        "items": "['a', 'b']",
    }
    assert events["stock low"] == {"level": "warning", "logger": "shop.orders"}
    assert events["failed"]["level"] == "error"
    assert "ZeroDivisionError: division by zero" in str(events["failed"]["exception"])
    assert "s3cret" not in run.stderr + run.stdout


def test_a_pool_task_logs_under_its_own_span(run_script, receiver, method):
    """Records made inside a pool task name the task's span and become its events."""
    source = f"""
    import logging, multiprocessing, sys
    from proctrace import traced

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format={FORMAT!r})

    @traced
    def work(x):
        logging.getLogger("pool").info("task %s", x)
        return x

    if __name__ == "__main__":
        with multiprocessing.get_context(sys.argv[1]).Pool(1) as pool:
            print(pool.map(work, [1, 2]), flush=True)
    """
    run = run_script(source, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 4))
    tasks = {s.span_id: s for s in spans["work"]}
    lines = _lines(run.stdout, "task 1") + _lines(run.stdout, "task 2")
    assert {line[1] for line in lines} == set(tasks)
    for line in lines:
        assert line[4].endswith("PoolWorker-1") and line[5] == method
        assert [e.name for e in tasks[line[1]].events] == [" ".join(line[-2:])]


def test_span_events_are_capped_and_can_be_turned_off(run_script, receiver):
    """At most 128 events per span, structlog's and stdlib's together, the rest counted;
    PROCTRACE_LOG_EVENTS=false turns the events off but keeps the keys on the records."""
    source = """
    import logging, multiprocessing, sys
    from proctrace import traced

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(otelSpanID)s")

    @traced
    def task():
        for i in range(200):
            logging.info("line %d", i)

    if __name__ == "__main__":
        p = multiprocessing.get_context("spawn").Process(target=task)
        p.start(); p.join()
    """
    run = run_script(source, env=receiver.env())
    assert run.returncode == 0, run.stderr
    task = by_name(settle(receiver, 2))["task"][0]
    assert len(task.events) == 128
    assert task.attributes["proctrace.dropped_log_events"] == 200 + 2 - 128
    receiver.clear()

    run = run_script(source, env={**receiver.env(), "PROCTRACE_LOG_EVENTS": "false"})
    assert run.returncode == 0, run.stderr
    task = by_name(settle(receiver, 2))["task"][0]
    assert task.events == ()
    assert set(run.stdout.split()) == {task.span_id}


def test_structlog_over_the_standard_library_makes_one_event_per_call(
    run_script, receiver, method
):
    """structlog configured to hand its events to stdlib logging: each event is one span event
    (structlog's, with its keys), not a second one for the stdlib record it becomes."""
    source = """
    import logging, multiprocessing, sys
    import structlog
    from proctrace import traced

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.processors.add_log_level,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
    )

    @traced
    def task():
        structlog.get_logger("app").info("via structlog", order=7)
        structlog.get_logger("app").debug("below the level")
        logging.getLogger("app").info("plain stdlib")

    if __name__ == "__main__":
        p = multiprocessing.get_context(sys.argv[1]).Process(target=task)
        p.start(); p.join()
    """
    run = run_script(source, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    task = by_name(settle(receiver, 2))["task"][0]
    names = [e.name for e in task.events]
    assert names == ["process started", "via structlog", "plain stdlib", "process finished"]
    assert task.events[1].attributes["order"] == 7


def test_logging_imported_only_inside_the_target(run_script, receiver, method):
    """A program that never imported logging before its child ran: the keys are there once
    the target imports it."""
    source = """
    import multiprocessing, sys
    from proctrace import traced

    @traced
    def task():
        import logging
        logging.basicConfig(stream=sys.stdout, format="%(otelSpanID)s %(message)s")
        logging.warning("late")

    if __name__ == "__main__":
        p = multiprocessing.get_context(sys.argv[1]).Process(target=task)
        p.start(); p.join()
        print("main loaded logging:", "logging" in sys.modules)
    """
    run = run_script(source, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    task = by_name(settle(receiver, 2))["task"][0]
    assert f"{task.span_id} late" in run.stdout
    assert [e.name for e in task.events] == ["process started", "late", "process finished"]
    assert "main loaded logging: False" in run.stdout


def test_a_direct_traced_call_in_the_main_program(run_script, receiver):
    """In the main program, a record inside a @traced call names that call's span and becomes
    its event."""
    source = """
    import logging, sys
    from proctrace import traced

    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(otelTraceID)s %(otelSpanID)s %(message)s")

    @traced
    def step():
        logging.info("inside step")

    if __name__ == "__main__":
        step()
    """
    run = run_script(source, env=receiver.env())
    assert run.returncode == 0, run.stderr
    step = by_name(settle(receiver, 2))["step"][0]
    assert f"{step.trace_id} {step.span_id} inside step" in run.stdout
    assert [e.name for e in step.events] == ["inside step"]


UNTRACED = """
import json, logging, multiprocessing, sys
import proctrace

def state(where):
    record = logging.getLogger("x").makeRecord("x", 20, "f", 1, "m", (), None)
    print(json.dumps([where, logging.getLogRecordFactory() is logging.LogRecord,
                      logging.Logger.makeRecord.__module__,
                      sorted(k for k in vars(record) if k.startswith("otel"))]), flush=True)

def child():
    state("child")

TRACED

if __name__ == "__main__":
    p = multiprocessing.get_context(sys.argv[1]).Process(target=child)
    p.start(); p.join()
    state("main")
"""


def test_a_program_that_is_not_traced_keeps_its_records(run_script, receiver, method):
    """Importing proctrace without tracing anything, or tracing with OTEL_SDK_DISABLED=true,
    changes neither the record factory nor makeRecord, in the program or its children."""
    disabled = {"OTEL_SDK_DISABLED": "true"}
    for traced, env in (("", {}), ("child = proctrace.traced(child)", disabled)):
        run = run_script(
            UNTRACED.replace("TRACED", traced), method, env={**receiver.env(), **env}
        )
        assert run.returncode == 0, run.stderr
        seen = [json.loads(line) for line in run.stdout.splitlines()]
        assert seen == [["child", True, "logging", []], ["main", True, "logging", []]], traced
    assert receiver.spans == []
