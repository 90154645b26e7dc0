"""An application span around a batch of processes, made with the OpenTelemetry API.

    python examples/application_span.py

proctrace sets up the OpenTelemetry SDK at the first traced process, so the
application's own spans go to the same place as proctrace's with no extra
setup. Processes started inside ``nightly-batch`` become its children.
"""

from __future__ import annotations

import multiprocessing

from opentelemetry import trace

import proctrace


@proctrace.traced
def crunch(part: int) -> int:
    return sum(i * i for i in range(part * 10_000))


if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    tracer = trace.get_tracer("nightly")
    with tracer.start_as_current_span("nightly-batch") as batch:
        workers = [ctx.Process(target=crunch, args=(part,)) for part in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        batch.set_attribute("batch.size", len(workers))
        print(f"trace id: {proctrace.current_trace_id()}")
