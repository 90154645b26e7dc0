"""The lesson's second program, traced: a process receives positional and keyword arguments.

    python -m proctrace.examples.arguments [--method fork|spawn|forkserver]

The span records each argument's repr (``proctrace.args``,
``proctrace.kwargs.key1``...); ``api_token`` looks secret, so it is recorded
as ``[REDACTED]``.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from multiprocessing import current_process

from proctrace import traced
from proctrace.examples._common import finish, parse_method


@traced
def process_task(x: int, y: int, z: int, key1: str, key2: str, api_token: str = "") -> None:
    print(
        "\n{0} has pid: {1} with parent pid: {2}".format(
            current_process().name, os.getpid(), os.getppid()
        )
    )
    print("Received arguments {0} {1} {2} {3} {4}\n".format(x, y, z, key1, key2), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    method = parse_method(__doc__.splitlines()[0], argv, default="fork")
    ctx = multiprocessing.get_context(method)
    process = ctx.Process(
        target=process_task,
        name="process-1",
        args=(1, 2, 3),
        kwargs={"key1": "arg1", "key2": "arg2", "api_token": "s3cr3t"},
    )
    process.start()
    process.join()
    finish()


if __name__ == "__main__":
    main()
