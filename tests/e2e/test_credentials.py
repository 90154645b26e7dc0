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
