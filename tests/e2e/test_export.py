"""Where spans go: the embedded trace file, OTLP, console, none, and the application's provider."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from conftest import by_name, clean_env, settle

from proctrace._otlp import files as _otlpjson
from proctrace._otlp import otlpjson
from proctrace.testing import decode_request

PROGRAM = """
import multiprocessing, sys
from proctrace import traced

@traced
def task(n):
    pass

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1] if len(sys.argv) > 1 else "fork")
    ps = [ctx.Process(target=task, args=(i,)) for i in range(2)]
    for p in ps: p.start()
    for p in ps: p.join()
"""


def _file_spans(path: Path) -> list:
    spans = []
    for request in _otlpjson.read(str(path)):
        spans += decode_request(otlpjson.to_protobuf(request))
    return spans


def test_without_endpoint_spans_go_to_a_private_local_trace_file(run_script, tmp_path, method):
    """No endpoint, no exporter: OTLP JSON lines under .proctrace/, mode 0600, announced once."""
    run = run_script(PROGRAM, method)
    assert run.returncode == 0, run.stderr
    files = list((tmp_path / ".proctrace").glob("*.jsonl"))
    assert len(files) == 1
    (path,) = files
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    lines = [line for line in run.stderr.splitlines() if line.startswith("proctrace:")]
    assert lines == [
        f"proctrace: 3 spans (trace {_file_spans(path)[0].trace_id}) written to "
        f".proctrace/{path.name}; see them with: proctrace view"
    ]
    for raw in path.read_text().splitlines():
        request = json.loads(raw)
        span = request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16  # hex, as OTLP/JSON
    spans = by_name(_file_spans(path))
    assert len(spans["task"]) == 2
    assert all(s.parent_span_id == spans["prog"][0].span_id for s in spans["task"])


def test_proctrace_dir_moves_the_trace_file(run_script, tmp_path):
    """PROCTRACE_DIR chooses the directory of the embedded trace file."""
    target = tmp_path / "elsewhere" / "traces"
    run = run_script(PROGRAM, env={"PROCTRACE_DIR": str(target)})
    assert run.returncode == 0, run.stderr
    assert len(list(target.glob("*.jsonl"))) == 1
    assert not (tmp_path / ".proctrace").exists()


def test_console_exporter_prints_spans_and_none_exports_nothing(run_script, tmp_path):
    """OTEL_TRACES_EXPORTER=console prints the spans; =none writes nothing anywhere."""
    run = run_script(PROGRAM, env={"OTEL_TRACES_EXPORTER": "console"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.count('"name": "task"') == 2
    assert not (tmp_path / ".proctrace").exists()

    run = run_script(PROGRAM, env={"OTEL_TRACES_EXPORTER": "none"})
    assert run.returncode == 0, run.stderr
    assert '"name"' not in run.stdout
    assert not (tmp_path / ".proctrace").exists()
    assert len(run.events("process finished")) == 2  # logs still carry trace ids


def test_service_name_comes_from_otel_service_name(run_script, receiver):
    """OTEL_SERVICE_NAME names the service on every span's resource."""
    run = run_script(PROGRAM, env={**receiver.env(), "OTEL_SERVICE_NAME": "billing"})
    assert run.returncode == 0, run.stderr
    assert {s.resource["service.name"] for s in settle(receiver, 3)} == {"billing"}


def test_configure_arguments_win_over_the_environment(run_script, receiver, any_receiver):
    """proctrace.configure(endpoint=..., protocol=...) overrides the OTEL_* variables."""
    source = """
    import multiprocessing, sys
    import proctrace

    @proctrace.traced
    def task():
        pass

    if __name__ == "__main__":
        proctrace.configure(endpoint=sys.argv[1], protocol=sys.argv[2], service_name="configured")
        p = multiprocessing.get_context("spawn").Process(target=task)
        p.start(); p.join()
    """
    run = run_script(
        source, any_receiver.endpoint, any_receiver.protocol, env=receiver.env()
    )
    assert run.returncode == 0, run.stderr
    spans = settle(any_receiver, 2)
    assert {s.resource["service.name"] for s in spans} == {"configured"}
    assert receiver.spans == []


def test_application_spans_share_the_destination_and_parent_the_children(
    run_script, any_receiver, method
):
    """Spans made through the OpenTelemetry API in main go to the same backend with no setup,
    and processes started inside one are its children."""
    source = """
    import multiprocessing, sys
    from opentelemetry import trace
    from proctrace import traced

    tracer = trace.get_tracer("app")

    @traced
    def task():
        pass

    if __name__ == "__main__":
        ctx = multiprocessing.get_context(sys.argv[1])
        with tracer.start_as_current_span("batch"):
            with tracer.start_as_current_span("prepare"):
                pass
            p = ctx.Process(target=task)
            p.start(); p.join()
    """
    run = run_script(source, method, env=any_receiver.env())
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(any_receiver, 3))
    batch = spans["batch"][0]
    assert spans["prepare"][0].parent_span_id == batch.span_id
    assert spans["task"][0].parent_span_id == batch.span_id
    assert spans["task"][0].trace_id == batch.trace_id
    assert "prog" not in spans  # a span was current: no extra main span


def test_an_application_provider_is_kept_and_receives_the_child_spans(
    run_script, receiver, method
):
    """An application that installs its own SDK TracerProvider keeps it; child spans reach it."""
    source = """
    import multiprocessing, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from proctrace import traced

    @traced
    def task():
        pass

    if __name__ == "__main__":
        provider = TracerProvider(resource=Resource.create({"service.name": "own-provider"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[2])))
        trace.set_tracer_provider(provider)
        assert trace.get_tracer_provider() is provider
        with trace.get_tracer("app").start_as_current_span("app-span"):
            p = multiprocessing.get_context(sys.argv[1]).Process(target=task)
            p.start(); p.join()
        provider.shutdown()
    """
    run = run_script(source, method, receiver.endpoint)
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 2))
    assert spans["task"][0].parent_span_id == spans["app-span"][0].span_id
    assert {s.resource["service.name"] for s in receiver.spans} == {"own-provider"}
    assert "Overriding" not in run.stderr


def test_a_bad_setting_in_the_environment_is_one_warning_and_the_program_runs(run_script):
    """A malformed protocol in the environment is one warning line for the run, and the
    children run traced with the fallback (tests/e2e/test_env_config.py has every variable)."""
    run = run_script(PROGRAM, env={"OTEL_EXPORTER_OTLP_PROTOCOL": "smoke-signals"})
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("OTEL_EXPORTER_OTLP_PROTOCOL") == 1
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=smoke-signals is not supported" in run.stderr
    assert len(run.events("process started")) == 2


def test_the_traced_program_never_loads_an_exporter_or_grpc(run_script, receiver, method):
    """Exporters live in the agent: neither the main program (the process that forks, checked
    after its children ended) nor any traced child ever loads gRPC or an OTLP exporter."""
    source = """
    import multiprocessing, sys
    from proctrace import traced

    def exporters():
        return sorted(m for m in sys.modules
                      if m == "grpc" or m.startswith("opentelemetry.exporter"))

    @traced
    def task(n):
        print("child", exporters(), flush=True)

    if __name__ == "__main__":
        ctx = multiprocessing.get_context(sys.argv[1])
        ps = [ctx.Process(target=task, args=(i,)) for i in range(2)]
        for p in ps: p.start()
        for p in ps: p.join()
        print("main", exporters(), flush=True)
    """
    run = run_script(source, method, env=receiver.env())
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["child []", "child []", "main []"], run.stdout
    settle(receiver, 3)


def test_a_trace_directory_set_for_one_command_is_named_in_the_hint(run_script, tmp_path):
    """`PROCTRACE_DIR=elsewhere python prog.py`: the exit line's `proctrace view` hint names
    the file, so that running it as printed (without the variable) shows the run."""
    elsewhere = tmp_path / "traces" / "sub"
    run = run_script(PROGRAM, "fork", env={"PROCTRACE_DIR": str(elsewhere)})
    assert run.returncode == 0, run.stderr
    (path,) = elsewhere.glob("*.jsonl")
    hint = run.stderr.rsplit("see them with: ", 1)[1].split()
    assert hint[:2] == ["proctrace", "view"] and len(hint) == 3, run.stderr
    assert Path(tmp_path, hint[2]).resolve() == path.resolve()
    view = subprocess.run(
        [sys.executable, "-m", "proctrace", "view", hint[2]], cwd=tmp_path, env=clean_env(),
        capture_output=True, text=True, timeout=60,
    )
    assert view.returncode == 0 and "task" in view.stdout, view.stderr


def test_an_application_provider_made_after_multiprocessing_gets_the_main_span(
    run_script, receiver, method
):
    """The application made a ``Queue`` (so ``multiprocessing.util``'s exit hook came first)
    and then its provider, with a batching processor and no ``shutdown()`` of its own: the
    SDK's exit hook shut the provider down before the run ended in multiprocessing's, and the
    main span never arrived, the child's span pointing at a parent nobody got (user trial).
    The run now shuts the provider down once its spans reached it."""
    source = """
    import multiprocessing, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    import proctrace

    def task():
        pass

    if __name__ == "__main__":
        ctx = multiprocessing.get_context(sys.argv[1])
        queue = ctx.Queue()
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[2])))
        trace.set_tracer_provider(provider)
        proctrace.instrument()
        p = ctx.Process(target=task)
        p.start(); p.join()
    """
    run = run_script(source, method, receiver.endpoint)
    assert run.returncode == 0, run.stderr
    spans = by_name(settle(receiver, 2))
    (main,) = spans["prog"]
    assert spans["task"][0].parent_span_id == main.span_id
    assert "failed to shut down" not in run.stderr
