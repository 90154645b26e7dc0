"""Decorating a worker you already have: one line, and each worker process is a span.

    python examples/decorate_worker.py

The worker below is ordinary multiprocessing code. Adding ``@traced`` is the
only change: each process gets a span under the main process's span, with its
pid, its arguments (the ``api_key`` keyword is recorded as ``[REDACTED]``),
how it ended, and structlog lines on stderr carrying the same trace id. The
worker's own structlog calls carry those keys too.
"""

from __future__ import annotations

import multiprocessing

import structlog

from proctrace import current_trace_id, traced


@traced
def resize_images(batch: list[str], size: int, api_key: str = "") -> None:
    log = structlog.get_logger()
    for name in batch:
        log.info("resized", image=name, size=size)


if __name__ == "__main__":
    batches = [["a.png", "b.png"], ["c.png"], ["d.png", "e.png", "f.png"]]
    workers = [
        multiprocessing.Process(
            target=resize_images,
            name=f"resizer-{i}",
            args=(batch, 256),
            kwargs={"api_key": "k-123"},
        )
        for i, batch in enumerate(batches)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(f"trace id: {current_trace_id()}")
