"""A process pool and an executor inside an application span.

    python -m proctrace.examples.pool [--method fork|spawn|forkserver]

Each task is a span under the span that submitted it (``map`` here,
``submit`` there), and each worker process has a span for its life under
the span where its pool was created.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from opentelemetry import trace

from proctrace import traced
from proctrace.examples._common import finish, parse_method


@traced
def checksum(block: int) -> int:
    return sum(range(block * 1000)) % 65521


def main(argv: Sequence[str] | None = None) -> None:
    method = parse_method(__doc__.splitlines()[0], argv, default="fork")
    ctx = multiprocessing.get_context(method)
    tracer = trace.get_tracer("proctrace.examples.pool")
    with tracer.start_as_current_span("checksum-job"):
        with tracer.start_as_current_span("pool"), ctx.Pool(2) as pool:
            print("pool.map:", pool.map(checksum, range(4)))
        with tracer.start_as_current_span("executor"), ProcessPoolExecutor(
            2, mp_context=ctx
        ) as executor:
            futures = [executor.submit(checksum, block) for block in range(4, 6)]
            print("executor.submit:", [f.result() for f in futures])
        finish()


if __name__ == "__main__":
    main()
