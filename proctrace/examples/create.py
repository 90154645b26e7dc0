"""The lesson's first program, traced: three processes print their name, pid and parent pid.

    python -m proctrace.examples.create [--method fork|spawn|forkserver]
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from multiprocessing import current_process

from proctrace import traced
from proctrace.examples._common import finish, parse_method


@traced
def process_task() -> None:
    print(
        "{0} has pid: {1} with parent pid: {2}".format(
            current_process().name, os.getpid(), os.getppid()
        ),
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> None:
    method = parse_method(__doc__.splitlines()[0], argv, default="fork")
    ctx = multiprocessing.get_context(method)
    process = [ctx.Process(target=process_task, name=f"process-{i}") for i in range(3)]
    for p in process:
        p.start()
    for p in process:
        p.join()
    print("{0} has pid: {1} ".format(current_process().name, os.getpid()))
    finish()


if __name__ == "__main__":
    main()
