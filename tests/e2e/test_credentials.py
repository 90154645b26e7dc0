"""Credentials where programs keep them (issue #11, item 5), end to end: a URL's password,
an Authorization header pair and an object's ``api_key`` never reach the OTLP receiver nor
the stderr log, while the user, host and other values do."""

from __future__ import annotations

import pytest
from conftest import by_name, settle

PROGRAM = """
import multiprocessing, sys
import structlog
from proctrace import traced

class Client:
    def __init__(self, host, api_key):
        self.host = host
        self.api_key = api_key

    def __repr__(self):
        return f"Client(host={self.host!r}, api_key={self.api_key!r})"

class Engine:  # shows its URL in its repr, as SQLAlchemy's engines do
    def __init__(self, url):
        self.url = url

    def __repr__(self):
        return f"Engine({self.url})"

@traced
def sync(url, headers, client, dsn=None):
    # a log value that is an object: a span event, with the same redaction
    structlog.get_logger().info("connecting", engine=Engine(url))

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    p = ctx.Process(
        target=sync,
        args=(
            "postgresql://app:S3CR3T-PW@db.internal:5432/orders",
            [("Authorization", "Bearer S3CR3T-TOKEN"), ("Accept", "application/json")],
            Client("api.example.com", "S3CR3T-KEY"),
        ),
        kwargs={"dsn": "mysql://reporter:S3CR3T-DSN@replica/sales?password=S3CR3T-Q&ssl=1"},
    )
    p.start()
    p.join()
    sys.exit(p.exitcode)
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_credentials_in_arguments_reach_neither_the_span_nor_the_log(run_script, receiver, method):
    """The child's span (args, kwargs, span events) and proctrace's own stderr lines show
    user, host, port, path, query and header names, and no secret."""
    run = run_script(PROGRAM, method, env={**receiver.env(), "PROCTRACE_LOG_FORMAT": "json"})
    assert run.returncode == 0, run.stderr
    spans = settle(receiver, 2)
    (span,) = by_name(spans)["sync"]
    args = span.attributes["proctrace.args"]
    assert args == (
        "'postgresql://app:[REDACTED]@db.internal:5432/orders'",
        "[('Authorization', [REDACTED]), ('Accept', 'application/json')]",
        "Client(host='api.example.com', api_key=[REDACTED])",
    )
    assert span.attributes["proctrace.kwargs.dsn"] == (
        "'mysql://reporter:[REDACTED]@replica/sales?password=[REDACTED]&ssl=1'"
    )
    (event,) = [e for e in span.events if e.name == "connecting"]
    assert (
        event.attributes["engine"] == "Engine(postgresql://app:[REDACTED]@db.internal:5432/orders)"
    )
    assert all("S3CR3T" not in repr((s.attributes, s.events)) for s in spans)

    (started,) = run.events("process started")
    assert started["args"] == list(args)
    assert started["kwargs"] == {"dsn": span.attributes["proctrace.kwargs.dsn"]}
    # The program's own "connecting" line is rendered by structlog as the program logged it;
    # proctrace's own lines carry no secret.
    own = [line for line in run.stderr.splitlines() if '"connecting"' not in line]
    assert own and "S3CR3T" not in "\n".join(own)
    assert "db.internal" in run.stderr and "api.example.com" in run.stderr


EXCEPTIONS = """
import logging, multiprocessing, os, sys
from proctrace import traced

def quiet():
    # The program's own prints (logging's last resort, multiprocessing's and python's
    # tracebacks) go to sys.stderr: away with them, so what is left there is proctrace's.
    sys.stderr = open(os.devnull, "w")

@traced
def helper():
    raise RuntimeError("helper failed: token=TOK-CALL")

def work():
    quiet()
    log = logging.getLogger("app")
    log.warning("connecting with password=%s", "PW-LOGGED")
    try:
        helper()
    except RuntimeError:
        pass
    try:
        raise RuntimeError("login failed: token=TOK-XYZ")
    except RuntimeError:
        log.exception("login")
        raise

def task(x):
    raise ValueError(f"task {x} failed: api_key=KEY-TASK")

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    p = ctx.Process(target=work)
    p.start(); p.join()
    with ctx.Pool(1) as pool:
        try:
            pool.apply(task, (1,))
        except ValueError:
            pass
    quiet()
    raise RuntimeError("main failed: password=PW-MAIN")
"""
LEAKS = ("TOK-", "PW-", "KEY-")


def _run_traced(tmp_path, receiver, method, log_format):
    import subprocess
    import sys

    from conftest import Run, clean_env

    script = tmp_path / "prog.py"
    script.write_text(EXCEPTIONS)
    env = clean_env(**receiver.env(), PROCTRACE_LOG_FORMAT=log_format)
    proc = subprocess.run(
        [sys.executable, "-m", "proctrace", "run", str(script), method],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def test_secrets_in_exceptions_reach_neither_the_spans_nor_the_lines(tmp_path, receiver, method):
    """An exception's message and stack trace are cleaned as argument reprs are, everywhere
    proctrace records one: a process span's status message and `exception` event, a called
    span's, a pool task's, the main span's, the `process failed` line's traceback; so is a
    stdlib log record's message, which names its span event."""
    run = _run_traced(tmp_path, receiver, method, "json")
    assert run.returncode == 1, run.stderr
    spans = by_name(settle(receiver, 5))
    everything = repr([(s.name, s.status_message, s.attributes, s.events)
                       for group in spans.values() for s in group])
    assert not [leak for leak in LEAKS if leak in everything], everything
    assert not [leak for leak in LEAKS if leak in run.stderr], run.stderr

    (work,) = spans["work"]
    assert work.status_message == "RuntimeError: login failed: token=[REDACTED]"
    (exception,) = [e for e in work.events if e.name == "exception"]
    assert exception.attributes["exception.message"] == "login failed: token=[REDACTED]"
    assert 'RuntimeError("login failed: token=[REDACTED]")' in str(
        exception.attributes["exception.stacktrace"]
    )
    assert "connecting with password=[REDACTED]" in [e.name for e in work.events]
    (helper,) = spans["helper"]
    assert helper.status_message == "RuntimeError: helper failed: token=[REDACTED]"
    (task,) = spans["task"]
    assert task.status_message == "ValueError: task 1 failed: api_key=[REDACTED]"
    (main,) = spans["prog"]
    assert main.status_message == "RuntimeError: main failed: password=[REDACTED]"
    assert "password=[REDACTED]" in str(main.events[0].attributes["exception.stacktrace"])

    (failed,) = run.events("process failed")
    assert "RuntimeError: login failed: token=[REDACTED]" in failed["exception"]


def test_the_failure_line_is_cleaned_on_the_console_too(tmp_path, receiver):
    """With structlog's console renderer (the lines go through structlog), the
    `process failed` line's traceback is cleaned the same way."""
    run = _run_traced(tmp_path, receiver, "fork", "console")
    assert run.returncode == 1, run.stderr
    assert "process failed" in run.stderr
    assert "login failed: token=[REDACTED]" in run.stderr
    assert not [leak for leak in LEAKS if leak in run.stderr], run.stderr


GIVEN = """
import logging, multiprocessing, os, sys
import proctrace
from proctrace import traced

proctrace.configure(redact=("customer_email",))

@traced(redact=("pin",))
def work(pin):
    sys.stderr = open(os.devnull, "w")  # Python's own traceback print: away, as above
    log = logging.getLogger("app")
    log.warning("card of customer_email=%s", "MAIL-LOGGED", extra={"pin": "PIN-EXTRA"})
    raise RuntimeError(f"pin={pin} rejected, customer_email: MAIL-EXC")

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    p = ctx.Process(target=work, args=("PIN-1234",))
    p.start()
    p.join()
"""


def test_names_given_to_redact_are_hidden_in_exceptions_and_log_events(
    run_script, receiver, method
):
    """A name given to ``redact=`` (``@traced``'s, ``configure()``'s) hides its value not
    only in the arguments but wherever proctrace records text: the status message, the
    ``exception`` event, the ``process failed`` line, a log event's name and attributes."""
    run = run_script(GIVEN, method, env={**receiver.env(), "PROCTRACE_LOG_FORMAT": "json"})
    spans = by_name(settle(receiver, 2))
    (work,) = spans["work"]
    everything = repr((work.status_message, work.attributes, work.events))
    assert "PIN-" not in everything and "MAIL-" not in everything, everything
    assert "PIN-" not in run.stderr and "MAIL-" not in run.stderr, run.stderr
    assert work.attributes["proctrace.args"] == ("[REDACTED]",)
    assert work.status_message == (
        "RuntimeError: pin=[REDACTED] rejected, customer_email: [REDACTED]"
    )
    (exception,) = [e for e in work.events if e.name == "exception"]
    assert "pin=[REDACTED] rejected" in str(exception.attributes["exception.stacktrace"])
    (logged,) = [e for e in work.events if e.name.startswith("card of")]
    assert logged.name == "card of customer_email=[REDACTED]"
    assert logged.attributes["pin"] == "[REDACTED]"
    (failed,) = run.events("process failed")
    assert "pin=[REDACTED] rejected" in failed["exception"]


QUOTED = """
import logging, multiprocessing, os, sys
import proctrace
from proctrace import traced

proctrace.instrument()  # the pool's task too

@traced(redact=["pin"])
def call_api(url, api_key, pin):
    logging.getLogger("app").warning("calling with %s", api_key)
    err = PermissionError(f"{url} rejected key {api_key!r} (pin {pin})")
    err.add_note(f"pin used: {pin}")
    raise err

@traced
def work():
    sys.stderr = open(os.devnull, "w")  # Python's own print of the traceback
    call_api("https://api.example.com", "sk_live_SECRET123", pin="PIN-4321")

def task(token):
    raise ValueError(f"refused {token}")

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    p = ctx.Process(target=work)
    p.start()
    p.join()
    with ctx.Pool(1) as pool:
        try:
            pool.apply(task, ("TOK-TASK-77",))
        except ValueError:
            pass
"""


def test_a_secret_arguments_value_is_hidden_where_a_message_quotes_it(
    run_script, receiver, method
):
    """An argument recorded as [REDACTED] (a secret-looking parameter, a ``redact=`` name,
    by position or keyword) is also hidden where an exception or a log message quotes its
    value without its name: the status messages and ``exception`` events of its span and of
    the span the exception reaches next, a note, a log event, the `process failed` line."""
    run = run_script(QUOTED, method, env={**receiver.env(), "PROCTRACE_LOG_FORMAT": "json"})
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 5))
    everything = repr([(s.status_message, s.attributes, s.events)
                       for group in spans.values() for s in group])
    for leak in ("SECRET123", "4321", "TOK-TASK"):
        assert leak not in everything, everything
        assert leak not in run.stderr, run.stderr
    (call,) = spans["call_api"]
    assert call.status_message == (
        "PermissionError: https://api.example.com rejected key [REDACTED] (pin [REDACTED])"
    )
    (exception,) = [e for e in call.events if e.name == "exception"]
    assert "pin used: [REDACTED]" in str(exception.attributes["exception.stacktrace"])
    assert "calling with [REDACTED]" in [e.name for e in call.events]
    (work,) = spans["work"]
    assert work.status_message == call.status_message
    (task,) = spans["task"]
    assert task.status_message == "ValueError: refused [REDACTED]"
    (failed,) = run.events("process failed")
    assert "rejected key [REDACTED] (pin [REDACTED])" in failed["exception"]
