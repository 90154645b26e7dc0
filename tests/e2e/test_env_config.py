"""The environment never breaks the program: a bad OTEL_* or PROCTRACE_* value is one warning
line for the whole run (not one per child), and the program runs traced, with the fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import by_name, settle

from proctrace.testing import OTLPReceiver

PROGRAM = """
import multiprocessing, sys
from proctrace import traced

@traced
def task(n, note="x" * 40):
    print("task", n, flush=True)

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    ps = [ctx.Process(target=task, args=(i,), kwargs={"note": "x" * 40}) for i in range(2)]
    for p in ps: p.start()
    for p in ps: p.join()
    print("done", [p.exitcode for p in ps], flush=True)
"""


def _warnings(stderr: str, name: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"proctrace: {name}")]


def _file_spans(directory: Path) -> list[dict]:
    """The spans in the run's local trace files under ``directory``."""
    spans = []
    for path in directory.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            for resource in json.loads(line)["resourceSpans"]:
                for scope in resource["scopeSpans"]:
                    spans.extend(scope["spans"])
    return spans


def _ran(run) -> None:
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "done [0, 0]", run.stdout
    assert "Traceback" not in run.stderr, run.stderr


# (variable, bad value, start method, what the spans at the receiver show)
TO_RECEIVER = [
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon", "fork", None),
    ("OTEL_TRACES_SAMPLER", "sometimes", "spawn", None),
    ("OTEL_SDK_DISABLED", "yes", "fork", None),
    ("OTEL_SERVICE_NAME", " ", "fork", lambda s: s["task"][0].resource["service.name"] == "prog"),
    ("PROCTRACE_MAX_REPR", "many", "forkserver",
     lambda s: s["task"][0].attributes["proctrace.kwargs.note"] == repr("x" * 40)),
    ("PROCTRACE_LOG_FORMAT", "xml", "fork", None),
    ("PROCTRACE_LOG_EVENTS", "perhaps", "spawn",
     lambda s: "process started" in [e.name for e in s["task"][0].events]),
    ("PROCTRACE_QUIET", "maybe", "fork", None),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon", "spawn", None),
]


@pytest.mark.parametrize(("name", "value", "method", "check"), TO_RECEIVER,
                         ids=[t[0] for t in TO_RECEIVER])
def test_a_bad_variable_warns_once_and_spans_still_arrive(
    run_script, receiver, name, value, method, check
):
    """One warning naming the variable for the whole run, the program's own output and
    exit status untouched, every span at the real receiver."""
    run = run_script(PROGRAM, method, env={**receiver.env(), name: value})
    _ran(run)
    (warning,) = _warnings(run.stderr, name)
    assert warning.startswith(f"proctrace: {name}=") and value.strip() in warning
    spans = by_name(settle(receiver, 3))
    if check is not None:
        assert check(spans)
    assert len(run.events("process started")) == 2  # not quiet: the default lines are there


def test_a_bad_traces_ratio_samples_everything(run_script, receiver):
    """OTEL_TRACES_SAMPLER_ARG that is not a ratio: 1.0, as the specification says."""
    env = {**receiver.env(), "OTEL_TRACES_SAMPLER": "traceidratio",
           "OTEL_TRACES_SAMPLER_ARG": "abc"}
    run = run_script(PROGRAM, "fork", env=env)
    _ran(run)
    assert len(_warnings(run.stderr, "OTEL_TRACES_SAMPLER_ARG=abc")) == 1
    settle(receiver, 3)


def test_http_json_is_sent_as_http_protobuf(run_script):
    """http/json (legal OTLP, not supported): its nearest, http/protobuf, to the same place."""
    with OTLPReceiver("http/protobuf") as receiver:
        env = {**receiver.env(), "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
        run = run_script(PROGRAM, "fork", env=env)
        _ran(run)
        (warning,) = _warnings(run.stderr, "OTEL_EXPORTER_OTLP_PROTOCOL")
        assert warning.endswith("using http/protobuf")
        settle(receiver, 3)


def test_a_bad_header_warns_without_its_value(run_script, receiver):
    """The transport's own options warn once per run too, and never repeat a header."""
    run = run_script(PROGRAM, "spawn", env={**receiver.env(),
                                            "OTEL_EXPORTER_OTLP_HEADERS": "s3cretvalue"})
    _ran(run)
    assert len(_warnings(run.stderr, "OTEL_EXPORTER_OTLP_HEADERS")) == 1
    assert "s3cretvalue" not in run.stderr
    settle(receiver, 3)


FILE_FALLBACK = [
    ("OTEL_TRACES_EXPORTER", "zipkin",
     "proctrace: OTEL_TRACES_EXPORTER=zipkin is not supported (otlp, console, none); "
     "writing spans to the local trace file instead"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317", "proctrace: OTEL_EXPORTER_OTLP_ENDPOINT="
     "localhost:4317 is not a URL like http://localhost:4317"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://user:s3cret@collector:99999",
     "proctrace: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://***@collector:99999 is not a "
     "valid URL"),
]


@pytest.mark.parametrize(("name", "value", "warning"), FILE_FALLBACK,
                         ids=[f[0] for f in FILE_FALLBACK])
def test_an_unusable_destination_falls_back_to_the_trace_file(
    run_script, tmp_path, name, value, warning
):
    """An exporter proctrace does not support, or a malformed endpoint (its userinfo never
    shown): the spans go to the local trace file, which the exit line names."""
    env = {"OTEL_TRACES_EXPORTER": "otlp", name: value}
    run = run_script(PROGRAM, "spawn", env=env)
    _ran(run)
    (line,) = _warnings(run.stderr, name)
    assert line.startswith(warning), line
    assert "s3cret" not in run.stderr
    assert "written to .proctrace/" in run.stderr
    assert len(_file_spans(tmp_path / ".proctrace")) == 3


def test_a_trace_dir_that_is_a_file_falls_back_to_the_per_user_place(run_script, tmp_path):
    """PROCTRACE_DIR naming a file: the trace file goes to the per-user location, and the
    exit line says where and why (no claim about the file named)."""
    (tmp_path / "afile").write_text("")
    state = tmp_path / "state"
    run = run_script(PROGRAM, "fork", env={"PROCTRACE_DIR": "afile", "XDG_STATE_HOME": str(state)})
    _ran(run)
    (line,) = [x for x in run.stderr.splitlines() if " written to " in x]
    assert "written to state/proctrace/" in line and "afile is not a directory" in line, line
    assert len(_file_spans(state / "proctrace")) == 3


def test_every_variable_bad_at_once_is_one_line_each(run_script, tmp_path):
    """All of them wrong at once: a line per variable, once per run with spawn children, and
    the program runs traced into the trace file."""
    env = {
        "OTEL_SERVICE_NAME": " ",
        "OTEL_TRACES_EXPORTER": "zipkin",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "smoke-signals",
        "OTEL_SDK_DISABLED": "on",
        "OTEL_TRACES_SAMPLER": "xray",
        "PROCTRACE_DIR": "/dev/null",
        "PROCTRACE_MAX_REPR": "-1",
        "PROCTRACE_LOG_FORMAT": "xml",
        "PROCTRACE_LOG_EVENTS": "sometimes",
        "PROCTRACE_QUIET": "2",
    }
    run = run_script(PROGRAM, "spawn", env={**env, "XDG_STATE_HOME": str(tmp_path / "state")})
    _ran(run)
    warnings = [line for line in run.stderr.splitlines()
                if line.startswith("proctrace: ") and " written to " not in line]
    # An unusable PROCTRACE_DIR is not a warning of the environment: the exit line says
    # where the spans went instead (the per-user place).
    assert sorted(line.split("=")[0].removeprefix("proctrace: ") for line in warnings) == sorted(
        set(env) - {"PROCTRACE_DIR"}
    ), warnings
    assert "/dev/null is not a directory" in run.stderr


def test_configure_with_a_bad_value_still_raises(run_script):
    """configure() is the programmer's: a bad argument is a ConfigurationError there."""
    source = """
    import proctrace
    try:
        proctrace.configure(exporter="zipkin")
    except proctrace.ConfigurationError as exc:
        print("raised:", exc)
    """
    run = run_script(source)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("raised: traces exporter zipkin is not supported")
